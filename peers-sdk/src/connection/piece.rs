//! [`Piece`]: one stream piece built where its message will be, so bytes read
//! from a file go out without the copy [`StreamWriter::write`](super::StreamWriter::write)
//! makes into its send buffer.
//!
//! ```text
//! Piece:  [ PREFIX free bytes ][ StreamData{id} ][ data read into it ... ][ tailroom ]
//!         └──────────── becomes the frame in place (codec::MessageBuf) ────────────┘
//! ```

use std::io::{self, Read};

use crate::codec::MessageBuf;
use crate::error::{Error, Result};
use crate::rpc::Envelope;

/// One piece of a stream's data, made by [`StreamWriter::piece`](super::StreamWriter::piece),
/// filled by the caller (on any thread: it is `Send` and holds no lock) and sent by
/// [`StreamWriter::write_piece`](super::StreamWriter::write_piece) as one
/// `StreamData` message.
#[derive(Debug)]
pub struct Piece {
    /// The stream it belongs to.
    pub(super) id: u64,
    /// The message: free prefix, envelope, data.
    buf: Vec<u8>,
    /// Where the data starts in `buf`.
    start: usize,
}

impl Piece {
    /// An empty piece of stream `id` with room for `capacity` data bytes.
    pub(super) fn new(id: u64, capacity: usize) -> Result<Piece> {
        // Room for the envelope (a map with the type and the id, under 32 bytes): a
        // buffer too short for it would be reallocated (a copy) when the data comes in.
        let mut buf = MessageBuf::vec_with_capacity(capacity.saturating_add(64));
        rmp_serde::encode::write_named(&mut buf, &Envelope::StreamData { id })
            .map_err(|e| Error::encode("envelope", e))?;
        let start = buf.len();
        Ok(Piece { id, buf, start })
    }

    /// Appends up to `len` bytes read from `source` (fewer only where it ends), straight
    /// into the piece's buffer: no zeroing, no intermediate copy. Returns how many.
    pub fn read_from(&mut self, source: impl Read, len: usize) -> io::Result<usize> {
        source.take(len as u64).read_to_end(&mut self.buf)
    }

    /// The data bytes.
    pub fn data(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// How many data bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether the piece holds no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message to send, built in place.
    pub(super) fn into_message(self) -> MessageBuf {
        MessageBuf::from_vec(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_reads_at_most_its_length_and_becomes_a_stream_data_message() {
        let mut piece = Piece::new(7, 10).unwrap();
        assert!(piece.is_empty());
        assert_eq!(piece.read_from(&b"0123456789abc"[..], 10).unwrap(), 10);
        assert_eq!(piece.data(), b"0123456789");
        assert_eq!(piece.read_from(&b"xy"[..], 5).unwrap(), 2, "a short source gives what it has");
        assert_eq!(piece.len(), 12);
        let at = piece.data().as_ptr();
        let message = piece.into_message();
        assert!(message.as_slice().as_ptr_range().contains(&at), "the piece was copied");
        let (envelope, body) = Envelope::decode(bytes::Bytes::copy_from_slice(message.as_slice())).unwrap();
        assert_eq!(envelope, Envelope::StreamData { id: 7 });
        assert_eq!(&body[..], b"0123456789xy");
    }
}
