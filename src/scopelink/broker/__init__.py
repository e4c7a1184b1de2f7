"""The broker: accounts, telescope pairing, roles and signed grants, for proxies and browsers
that meet through it (signaling only; no telescope traffic passes here).

- `store`: the database behind one interface, and `open_store(url)`; `sqlite_store` and
  `postgres_store` are its two backends, `migrations` the one schema they share.
- `refusal`: `BrokerRefusal`, the one error of every operation, with its kind and reason.
- `accounts`: accounts, passwords and API tokens.
- `pairing`: a proxy and its owner agreeing on a telescope (device-code pattern).
- `telescopes`: telescopes, their members and roles, and the grants issued for them.
- `invitations`: single-use codes that give an account a role on a telescope.

No web framework here: transports map a `BrokerRefusal` to their own terms.
"""
