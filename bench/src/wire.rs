//! The bytes the comparative load generator sends and reads: y-protocols
//! sync and awareness messages, Yjs v1 updates for one keystroke, and the
//! timing markers carried inside the inserted text.
//!
//! A keystroke update is encoded by hand (one string item appended after
//! the writer's previous one), so generating load costs the same tiny
//! amount whichever server is measured and nothing CRDT-shaped runs on the
//! generator's hot path. `yrs` checks the encoding: [`tests`] integrate the
//! bytes into a real document, and every run's verifier does the same.

/// y-protocols top-level message types.
pub const MSG_SYNC: u64 = 0;
pub const MSG_AWARENESS: u64 = 1;
/// y-protocols sync message types.
pub const SYNC_STEP1: u64 = 0;
pub const SYNC_STEP2: u64 = 1;
pub const SYNC_UPDATE: u64 = 2;

/// The root text every writer appends to.
pub const ROOT: &str = "text";

/// Length of a marker in bytes (and UTF-16 units: it is ASCII).
pub const MARKER_LEN: usize = 24;

pub fn write_var_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads a var uint at `*pos`, advancing it.
pub fn read_var_uint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut n: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        n |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b < 0x80 {
            return Some(n);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Reads var-length bytes at `*pos`, advancing it.
pub fn read_var_bytes<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(read_var_uint(bytes, pos)?).ok()?;
    let end = pos.checked_add(len)?;
    let out = bytes.get(*pos..end)?;
    *pos = end;
    Some(out)
}

/// A timing marker: which writer, which keystroke, and the keystroke's
/// intended send time in µs since the run's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub writer: u16,
    pub seq: u32,
    pub at_us: u64,
}

impl Marker {
    /// `@WWWWSSSSSSSSTTTTTTTTTT.`: hex writer, sequence and time.
    pub fn encode(&self) -> String {
        format!("@{:04x}{:08x}{:010x}.", self.writer, self.seq, self.at_us & 0xff_ffff_ffff)
    }
}

fn hex(bytes: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for &b in bytes {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        n = n << 4 | u64::from(d);
    }
    Some(n)
}

/// Calls `found` for every marker in `bytes` (an update, an awareness
/// state, anything that carries the text unescaped).
pub fn scan_markers(bytes: &[u8], mut found: impl FnMut(Marker)) {
    let mut i = 0;
    while i + MARKER_LEN <= bytes.len() {
        if bytes[i] == b'@' && bytes[i + MARKER_LEN - 1] == b'.' {
            let m = &bytes[i + 1..i + MARKER_LEN - 1];
            if let (Some(w), Some(s), Some(t)) = (hex(&m[..4]), hex(&m[4..12]), hex(&m[12..])) {
                found(Marker { writer: w as u16, seq: s as u32, at_us: t });
                i += MARKER_LEN;
                continue;
            }
        }
        i += 1;
    }
}

/// Builds one writer's keystroke updates: each appends `text` right after
/// the writer's previous insertion in the root text [`ROOT`], exactly as
/// Yjs encodes such an insert (v1).
pub struct KeystrokeEncoder {
    client: u64,
    clock: u64,
}

impl KeystrokeEncoder {
    pub fn new(client: u64) -> KeystrokeEncoder {
        KeystrokeEncoder { client, clock: 0 }
    }

    /// The update inserting ASCII `text` (its length is its clock length).
    pub fn update(&mut self, text: &str) -> Vec<u8> {
        debug_assert!(text.is_ascii());
        let mut out = Vec::with_capacity(text.len() + 24);
        write_var_uint(&mut out, 1); // clients
        write_var_uint(&mut out, 1); // structs of this client
        write_var_uint(&mut out, self.client);
        write_var_uint(&mut out, self.clock);
        if self.clock == 0 {
            // No origin: the item names its parent, the root type.
            out.push(4); // ContentString
            write_var_uint(&mut out, 1); // parent is a root key
            write_var_bytes(&mut out, ROOT.as_bytes());
        } else {
            out.push(4 | 0x80); // ContentString with a left origin
            write_var_uint(&mut out, self.client);
            write_var_uint(&mut out, self.clock - 1);
        }
        write_var_bytes(&mut out, text.as_bytes());
        write_var_uint(&mut out, 0); // empty delete set
        self.clock += text.len() as u64;
        out
    }
}

/// A sync message carrying `update` (type update, or step 2).
pub fn sync_message(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 6);
    write_var_uint(&mut out, MSG_SYNC);
    write_var_uint(&mut out, kind);
    write_var_bytes(&mut out, payload);
    out
}

/// Sync step 1 of an empty document (an empty state vector).
pub fn empty_step1() -> Vec<u8> {
    sync_message(SYNC_STEP1, &[0])
}

/// Sync step 2 answering with nothing (an empty update).
pub fn empty_step2() -> Vec<u8> {
    sync_message(SYNC_STEP2, &[0, 0])
}

/// An awareness message: one client's state at `clock`.
pub fn awareness_message(client: u64, clock: u64, state_json: &str) -> Vec<u8> {
    let mut update = Vec::with_capacity(state_json.len() + 16);
    write_var_uint(&mut update, 1);
    write_var_uint(&mut update, client);
    write_var_uint(&mut update, clock);
    write_var_bytes(&mut update, state_json.as_bytes());
    let mut out = Vec::with_capacity(update.len() + 4);
    write_var_uint(&mut out, MSG_AWARENESS);
    write_var_bytes(&mut out, &update);
    out
}

/// What a y-protocols message is, as far as the generator cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Step1,
    /// Step 2: the server's answer to our step 1 (the update it carries).
    Step2(&'a [u8]),
    Update(&'a [u8]),
    Awareness(&'a [u8]),
    Other,
}

/// Classifies a y-protocols message (without any dialect prefix).
pub fn classify(msg: &[u8]) -> Incoming<'_> {
    let mut pos = 0;
    match read_var_uint(msg, &mut pos) {
        Some(MSG_SYNC) => {
            let kind = read_var_uint(msg, &mut pos);
            let Some(payload) = read_var_bytes(msg, &mut pos) else { return Incoming::Other };
            match kind {
                Some(SYNC_STEP1) => Incoming::Step1,
                Some(SYNC_STEP2) => Incoming::Step2(payload),
                Some(SYNC_UPDATE) => Incoming::Update(payload),
                _ => Incoming::Other,
            }
        }
        Some(MSG_AWARENESS) => Incoming::Awareness(msg.get(pos..).unwrap_or_default()),
        _ => Incoming::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, GetString, ReadTxn, Transact, Update};

    #[test]
    fn keystroke_updates_integrate_in_yrs_from_two_writers() {
        let doc = Doc::new();
        let text = doc.get_or_insert_text(ROOT);
        let mut a = KeystrokeEncoder::new(11);
        let mut b = KeystrokeEncoder::new(22);
        let mut updates = Vec::new();
        for seq in 0..50u32 {
            updates.push(a.update(&Marker { writer: 1, seq, at_us: u64::from(seq) * 7 }.encode()));
            updates.push(b.update(&Marker { writer: 2, seq, at_us: 1 << 39 }.encode()));
        }
        for u in &updates {
            let mut txn = doc.transact_mut();
            txn.apply_update(Update::decode_v1(u).expect("decodes")).expect("applies");
        }
        let txn = doc.transact();
        assert!(txn.store().pending_update().is_none(), "nothing left pending");
        let s = text.get_string(&txn);
        assert_eq!(s.len(), 100 * MARKER_LEN);
        let mut seen = Vec::new();
        scan_markers(s.as_bytes(), |m| seen.push(m));
        assert_eq!(seen.len(), 100);
        assert_eq!(
            seen.iter().filter(|m| m.writer == 1).map(|m| m.seq).collect::<Vec<_>>(),
            (0..50).collect::<Vec<_>>()
        );
    }

    #[test]
    fn markers_round_trip_inside_noise() {
        let m = Marker { writer: 0xbeef, seq: 123_456, at_us: 987_654_321 };
        let mut bytes = vec![0x40, 1, 2, b'@'];
        bytes.extend_from_slice(m.encode().as_bytes());
        bytes.extend_from_slice(b"@zz.");
        let mut seen = Vec::new();
        scan_markers(&bytes, |m| seen.push(m));
        assert_eq!(seen, vec![m]);
    }

    #[test]
    fn messages_classify() {
        let u = KeystrokeEncoder::new(5).update("abc");
        assert_eq!(classify(&sync_message(SYNC_UPDATE, &u)), Incoming::Update(&u[..]));
        assert_eq!(classify(&empty_step1()), Incoming::Step1);
        assert_eq!(classify(&empty_step2()), Incoming::Step2(&[0, 0][..]));
        assert!(matches!(classify(&awareness_message(1, 2, "{}")), Incoming::Awareness(_)));
        assert_eq!(classify(&[0, 9]), Incoming::Other);
        let mut pos = 0;
        assert_eq!(read_var_uint(&[0xff; 12], &mut pos), None);
    }
}
