"""Media plumbing below services, WebRTC and the web transports: the latest-value slot every frame
moves through, the display frame every viewer shares, and scaling to a width."""
