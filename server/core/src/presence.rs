//! Presence arithmetic, free of I/O and clocks (times are passed in as
//! milliseconds): the stable colour of a name, a participant's status
//! (active / idle / away) and typing flag from their input times, and the
//! throttle that caps how often the peers list goes to an editor.

use weft_protocol::presence::Status;

/// How long after the last key a participant still counts as typing.
pub const TYPING_PAUSE_MS: u64 = 1_000;
/// Default idle timeout: no input for this long shows as idle.
pub const DEFAULT_IDLE_MS: u64 = 5 * 60 * 1_000;

/// `#rrggbb` for `name`: the same name gets the same colour in every
/// session and on every machine (FNV-1a of the name picks a hue; fixed
/// saturation and lightness keep every colour readable on light and dark
/// themes).
pub fn color_for(name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.trim().to_lowercase().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let hue = (hash % 360) as f64;
    let (s, l) = (0.65, 0.5);
    let c = (1.0 - (2.0 * l - 1.0_f64).abs()) * s;
    let h = hue / 60.0;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    format!("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b))
}

/// Whether `color` is a `#rrggbb` colour (what an editor may pass in).
pub fn is_color(color: &str) -> bool {
    color.len() == 7 && color.starts_with('#') && color[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// A participant's input, for their status and typing flag.
#[derive(Debug, Clone)]
pub struct Activity {
    last_input: u64,
    last_key: Option<u64>,
    focused: bool,
    idle_ms: u64,
    away_ms: u64,
}

impl Activity {
    /// Starts active at `now`; idle after `idle_ms` without input, away
    /// after `away_ms` (or when unfocused).
    pub fn new(now: u64, idle_ms: u64, away_ms: u64) -> Activity {
        Activity { last_input: now, last_key: None, focused: true, idle_ms, away_ms: away_ms.max(idle_ms) }
    }

    /// Any input (a cursor move, a focus gain).
    pub fn input(&mut self, now: u64) {
        self.last_input = now;
    }

    /// A keystroke (a change typed in the editor).
    pub fn key(&mut self, now: u64) {
        self.last_input = now;
        self.last_key = Some(now);
    }

    pub fn set_focused(&mut self, focused: bool, now: u64) {
        self.focused = focused;
        if focused {
            self.last_input = now;
        }
    }

    pub fn status(&self, now: u64) -> Status {
        let quiet = now.saturating_sub(self.last_input);
        if !self.focused || quiet >= self.away_ms {
            Status::Away
        } else if quiet >= self.idle_ms {
            Status::Idle
        } else {
            Status::Active
        }
    }

    pub fn typing(&self, now: u64) -> bool {
        self.last_key.is_some_and(|k| now.saturating_sub(k) < TYPING_PAUSE_MS)
    }
}

/// At most one send per `interval_ms`; a change in between is sent when
/// the interval is over (never dropped).
#[derive(Debug, Clone)]
pub struct Throttle {
    interval_ms: u64,
    last_sent: Option<u64>,
    pending: bool,
}

impl Throttle {
    pub fn new(interval_ms: u64) -> Throttle {
        Throttle { interval_ms, last_sent: None, pending: false }
    }

    /// Something changed: it must be sent, now or later.
    pub fn mark(&mut self) {
        self.pending = true;
    }

    /// Whether to send now; if so, the send is recorded.
    pub fn due(&mut self, now: u64) -> bool {
        if !self.pending || self.last_sent.is_some_and(|t| now.saturating_sub(t) < self.interval_ms) {
            return false;
        }
        self.pending = false;
        self.last_sent = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_stable_and_well_formed() {
        assert_eq!(color_for("Alice"), color_for("alice "));
        assert_ne!(color_for("Alice"), color_for("Bob"));
        for name in ["", "Alice", "日本", "🦀"] {
            assert!(is_color(&color_for(name)), "{name}");
        }
    }

    #[test]
    fn status_follows_input_and_focus() {
        let mut a = Activity::new(0, 100, 300);
        assert_eq!(a.status(50), Status::Active);
        assert_eq!(a.status(150), Status::Idle);
        assert_eq!(a.status(300), Status::Away);
        a.key(400);
        assert!(a.typing(500) && !a.typing(400 + TYPING_PAUSE_MS));
        assert_eq!(a.status(450), Status::Active);
        a.set_focused(false, 460);
        assert_eq!(a.status(470), Status::Away);
    }

    #[test]
    fn throttle_sends_at_most_once_per_interval_and_never_drops() {
        let mut t = Throttle::new(33);
        assert!(!t.due(0));
        t.mark();
        assert!(t.due(0));
        t.mark();
        assert!(!t.due(10));
        assert!(t.due(33));
        assert!(!t.due(100));
    }
}
