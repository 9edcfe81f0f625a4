//! A received message's body: the route and the encoded value inside the
//! frame they came in, read in place. What the envelope parser
//! (`message.rs`) hands out and the serializer decodes.

use crate::transport::Frame;

/// The route and encoded body inside a received frame, without copying
/// either out of it.
#[derive(Debug)]
pub struct Body {
    pub(super) frame: Frame,
    pub(super) route: std::ops::Range<usize>,
    pub(super) start: usize,
    /// The body, when it is not in the frame (a `shared` message: it is in
    /// shared memory, PROTOCOL.md §9).
    pub(super) apart: Option<Frame>,
}

impl Body {
    /// The body's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.apart {
            Some(apart) => apart,
            None => &self.frame[self.start..],
        }
    }

    /// The frame as shared memory, and where the body starts in it. The
    /// frame stays alive as long as any clone of it.
    pub fn share(&mut self) -> (::bytes::Bytes, usize) {
        match &mut self.apart {
            Some(apart) => (apart.share(), 0),
            None => (self.frame.share(), self.start),
        }
    }

    /// The frame's memory, emptied, for building another frame in, unless
    /// it is large (a large one goes back to its reader's spare instead).
    pub fn into_small_buffer(self) -> Option<Vec<u8>> {
        self.frame.into_small_buffer()
    }

    /// The route a request or notification is addressed to (empty for a
    /// response).
    pub fn route(&self) -> &str {
        std::str::from_utf8(&self.frame[self.route.clone()]).expect("checked when parsed")
    }
}
