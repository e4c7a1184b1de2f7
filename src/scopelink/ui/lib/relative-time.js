/**
 * Times in words for the broker's lists: when an invitation expires, when someone joined or
 * connected. Pure, so it reads the same in every view.
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * A span from now in words: "in 7 days", "in 3 h", "in 12 min", "2 min ago", "now".
 *
 * @param {number} deltaMs the time less now (positive: in the future)
 * @returns {string}
 */
export function relativeTime(deltaMs) {
  const span = Math.abs(deltaMs);
  if (span < MINUTE) return deltaMs >= 0 ? "in less than a minute" : "just now";
  const [count, unit] =
    span < HOUR
      ? [Math.round(span / MINUTE), "min"]
      : span < DAY
        ? [Math.round(span / HOUR), "h"]
        : [Math.round(span / DAY), Math.round(span / DAY) === 1 ? "day" : "days"];
  return deltaMs >= 0 ? `in ${count} ${unit}` : `${count} ${unit} ago`;
}

/**
 * A moment as a short local date and time.
 *
 * @param {number} epochSeconds
 * @returns {string}
 */
export function localTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });
}
