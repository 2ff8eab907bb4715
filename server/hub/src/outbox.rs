//! A peer's outbox: the frames queued for its connection and the reason it
//! must go, behind one lock and one wake-up.
//!
//! It replaces a tokio mpsc channel plus a separate kick handle. The channel
//! allocated a block of 32 slots when it was created and an `Arc` of ~0.5 KiB
//! (cache-padded counters), ~1.8 KiB per connection whether the peer ever
//! received a frame or not; memory per idle connection is a target
//! (docs/benchmarks.md, item 13). Here the queue is a `VecDeque` that
//! allocates on the first frame and gives a grown buffer back once it has
//! drained, so an idle connection holds ~0.2 KiB.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use weft_protocol::ErrorCode;

use crate::room::Outbound;

/// A drained queue keeps a buffer of up to this many frames; a larger one,
/// grown by a burst, is freed.
const KEEP_CAPACITY: usize = 16;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The peer has `capacity` frames waiting: it reads too slowly.
    Full,
    /// The connection is closing or was kicked; the frame is not needed.
    Closed,
}

/// The sending and the receiving side are the same handle: the room and the
/// hub-wide registry hold clones, the connection task reads from its own.
#[derive(Clone)]
pub struct Outbox(Arc<Inner>);

struct Inner {
    state: Mutex<State>,
    ready: Notify,
    capacity: usize,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Outbound>,
    kicked: Option<(ErrorCode, String)>,
    closed: bool,
}

impl Outbox {
    /// An outbox that refuses frames beyond `capacity` waiting ones.
    pub fn new(capacity: usize) -> Self {
        Outbox(Arc::new(Inner { state: Mutex::new(State::default()), ready: Notify::new(), capacity }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; the
        // queue is still consistent, so carry on with it.
        self.0.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a frame for the connection without waiting.
    pub fn try_send(&self, frame: Outbound) -> Result<(), Refused> {
        {
            let mut state = self.state();
            if state.closed || state.kicked.is_some() {
                return Err(Refused::Closed);
            }
            if state.frames.len() >= self.0.capacity {
                return Err(Refused::Full);
            }
            state.frames.push_back(frame);
        }
        self.0.ready.notify_one();
        Ok(())
    }

    /// Asks the connection to close with `code`; the first reason wins.
    /// Frames still queued are dropped: the connection will not send them.
    pub fn kick(&self, code: ErrorCode, message: impl Into<String>) {
        {
            let mut state = self.state();
            state.kicked.get_or_insert_with(|| (code, message.into()));
            state.frames = VecDeque::new();
        }
        self.0.ready.notify_one();
    }

    /// Whether [`Outbox::kick`] was called (the connection is going away).
    pub fn is_kicked(&self) -> bool {
        self.state().kicked.is_some()
    }

    /// The next frame to send, or the reason to close if the connection was
    /// kicked (a kick goes before frames still queued). Cancel safe: a frame
    /// is taken only when this resolves.
    pub async fn next(&self) -> Result<Outbound, (ErrorCode, String)> {
        loop {
            if let Some(next) = self.poll_next() {
                return next;
            }
            // A notification sent between the check above and this wait is
            // kept as a permit, so no frame is missed.
            self.0.ready.notified().await;
        }
    }

    /// The next queued frame, if one is waiting and the peer was not kicked.
    pub fn try_next(&self) -> Option<Outbound> {
        match self.poll_next() {
            Some(Ok(frame)) => Some(frame),
            _ => None,
        }
    }

    fn poll_next(&self) -> Option<Result<Outbound, (ErrorCode, String)>> {
        let mut state = self.state();
        if let Some(reason) = &state.kicked {
            return Some(Err(reason.clone()));
        }
        let frame = state.frames.pop_front()?;
        if state.frames.is_empty() && state.frames.capacity() > KEEP_CAPACITY {
            state.frames = VecDeque::new();
        }
        Some(Ok(frame))
    }

    /// The connection is ending: later frames are refused and dropped.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.frames = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(n: u8) -> Outbound {
        Outbound::Binary(Bytes::from(vec![n]))
    }

    fn byte(out: Outbound) -> u8 {
        match out {
            Outbound::Binary(b) => b[0],
            Outbound::Text(_) => panic!("expected a binary frame"),
        }
    }

    #[tokio::test]
    async fn frames_come_out_in_order_and_a_full_queue_refuses() {
        let outbox = Outbox::new(3);
        for n in 0..3 {
            outbox.try_send(frame(n)).expect("room for the frame");
        }
        assert_eq!(outbox.try_send(frame(9)), Err(Refused::Full));
        assert_eq!(byte(outbox.next().await.expect("not kicked")), 0);
        assert_eq!(byte(outbox.try_next().expect("queued")), 1);
        outbox.try_send(frame(3)).expect("room again");
        assert_eq!(byte(outbox.try_next().expect("queued")), 2);
        assert_eq!(byte(outbox.try_next().expect("queued")), 3);
        assert!(outbox.try_next().is_none());
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_for_a_frame_sent_from_another_task() {
        let outbox = Outbox::new(8);
        let sender = outbox.clone();
        let reader = tokio::spawn(async move { outbox.next().await.map(byte) });
        tokio::task::yield_now().await;
        sender.try_send(frame(7)).expect("room for the frame");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await;
        assert_eq!(got.expect("woken").expect("joined"), Ok(7));
    }

    #[tokio::test]
    async fn a_kick_goes_before_queued_frames_and_refuses_later_ones() {
        let outbox = Outbox::new(8);
        outbox.try_send(frame(1)).expect("room for the frame");
        outbox.kick(ErrorCode::Overloaded, "too slow");
        outbox.kick(ErrorCode::Unauthorized, "second reason loses");
        assert!(outbox.is_kicked());
        assert_eq!(outbox.next().await.map(byte), Err((ErrorCode::Overloaded, "too slow".into())));
        assert!(outbox.try_next().is_none());
        assert_eq!(outbox.try_send(frame(2)), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn a_closed_outbox_drops_frames_and_a_drained_burst_frees_its_buffer() {
        let outbox = Outbox::new(1000);
        for n in 0..100 {
            outbox.try_send(frame(n)).expect("room for the frame");
        }
        for n in 0..100 {
            assert_eq!(byte(outbox.try_next().expect("queued")), n);
        }
        assert!(outbox.state().frames.capacity() <= KEEP_CAPACITY);
        outbox.close();
        assert_eq!(outbox.try_send(frame(1)), Err(Refused::Closed));
        assert!(!outbox.is_kicked());
    }
}
