//! Meeting by code: the PAKE over a socket, then a `Connection` pinned to the device
//! the PAKE confirmed.
//!
//! The two devices meet through the signaling server: the creator makes a session of
//! kind `"pake"`, whose number is the code's number; the joiner joins it by that number;
//! both open a frame relay to the other. The first frames on the relay are the PAKE's
//! ([`super::pake`]), one message per socket frame:
//!
//! ```text
//!  frame = MessagePack(PakeFrame)            at most MAX_PAKE_FRAME bytes
//!  PakeFrame = { "Pake": bin (33 B) } | { "Confirm": { device: DeviceInfo, mac: bin } }
//!
//!  creator                                   joiner
//!   Pake          ─────────────────────▶
//!                 ◀─────────────────────     Pake
//!   Confirm       ─────────────────────▶
//!                 ◀─────────────────────     Confirm
//!   Connection::connect (Noise handshake,    Connection::accept, on the same socket
//!   expected = the confirmed device)
//! ```
//!
//! Each side sends its frame as soon as it has it and reads exactly two PAKE frames
//! before handing the socket to the `Connection` handshake, so the handshake's frames
//! never mix with the PAKE's. The handshake's trust policy accepts exactly the device
//! (user, id and both keys) that the PAKE confirmed ([`pinned_config`]): a signaling
//! server that answers with its own device fails the handshake.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use peers_sdk::{ConnectionConfig, DeviceInfo, DeviceKeys, Socket, TrustLevel};
use serde::{Deserialize, Serialize};

use super::pake::{self, CodeRole, Confirm, PakeMessage};
use super::{TransferCode, TransferError};
use crate::Result;

/// Largest PAKE frame accepted, in bytes (a `Confirm` with a device of no addresses is
/// about 150 B; addresses are advisory and few).
pub const MAX_PAKE_FRAME: usize = 4096;

/// One PAKE frame on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PakeFrame {
    /// The SPAKE2 element.
    Pake(PakeMessage),
    /// The device and its confirmation MAC.
    Confirm(Confirm),
}

impl PakeFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Result<Bytes, TransferError> {
        let bytes = rmp_serde::to_vec(self).map_err(|e| TransferError::Protocol(format!("encode PAKE frame: {e}")))?;
        if bytes.len() > MAX_PAKE_FRAME {
            return Err(TransferError::Protocol(format!("PAKE frame of {} bytes", bytes.len())));
        }
        Ok(Bytes::from(bytes))
    }

    /// Reads a frame, refusing one over [`MAX_PAKE_FRAME`] before decoding it.
    pub fn decode(bytes: &[u8]) -> Result<Self, TransferError> {
        if bytes.len() > MAX_PAKE_FRAME {
            return Err(TransferError::Protocol(format!(
                "PAKE frame of {} bytes (at most {MAX_PAKE_FRAME})",
                bytes.len()
            )));
        }
        rmp_serde::from_slice(bytes).map_err(|e| TransferError::Protocol(format!("PAKE frame: {e}")))
    }
}

async fn send_frame(socket: &dyn Socket, frame: PakeFrame) -> Result<()> {
    socket.send(frame.encode()?).await?;
    Ok(())
}

async fn recv_frame(socket: &dyn Socket) -> Result<PakeFrame> {
    let bytes = socket.recv().await?;
    Ok(PakeFrame::decode(&bytes)?)
}

/// Runs the PAKE on `code` as `role` over `socket`, sending `own` as this side's
/// device; returns the peer's device once its confirmation checks. A wrong code is
/// [`TransferError::WrongCode`] (on both sides); the whole exchange must end within
/// `timeout`. On success the socket carries nothing more of the PAKE.
pub async fn authenticate(
    socket: &dyn Socket,
    code: &TransferCode,
    role: CodeRole,
    own: &DeviceInfo,
    timeout: Duration,
) -> Result<DeviceInfo> {
    let exchange = async {
        let (state, message) = pake::start(code, role);
        send_frame(socket, PakeFrame::Pake(message)).await?;
        let PakeFrame::Pake(peer) = recv_frame(socket).await? else {
            return Err(TransferError::Protocol("a Confirm before the PAKE message".into()).into());
        };
        let (state, confirm) = state.receive(&peer, own)?;
        send_frame(socket, PakeFrame::Confirm(confirm)).await?;
        let PakeFrame::Confirm(peer) = recv_frame(socket).await? else {
            return Err(TransferError::Protocol("a second PAKE message".into()).into());
        };
        Ok(state.receive(&peer)?)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(TransferError::TimedOut { what: "the PAKE with the other device", after: timeout }.into()),
    }
}

/// Whether `remote` is `confirmed`: the same user claim, device id and both keys
/// (addresses are advisory and not compared).
pub fn is_confirmed(remote: &DeviceInfo, confirmed: &DeviceInfo) -> bool {
    remote.user_id == confirmed.user_id
        && remote.device_id == confirmed.device_id
        && remote.signing_key == confirmed.signing_key
        && remote.static_key == confirmed.static_key
}

/// A connection config for `keys` that trusts exactly `confirmed` and nobody else.
pub fn pinned_config(keys: Arc<DeviceKeys>, confirmed: DeviceInfo) -> ConnectionConfig {
    ConnectionConfig::new(keys, move |remote: &DeviceInfo| match is_confirmed(remote, &confirmed) {
        true => TrustLevel::Trusted,
        false => TrustLevel::Untrusted,
    })
}

#[cfg(test)]
mod tests {
    use peers_sdk::{Connection, MemorySocket};
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_bytes_decode_or_err_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = PakeFrame::decode(&bytes);
        }

        #[test]
        fn a_frame_decodes_to_itself(element in proptest::collection::vec(any::<u8>(), 0..64), mac in proptest::collection::vec(any::<u8>(), 0..64)) {
            let device = DeviceKeys::generate("p").unwrap().info(vec!["http://10.0.0.1:7700/".into()]).unwrap();
            for frame in [PakeFrame::Pake(PakeMessage(element.clone())), PakeFrame::Confirm(Confirm { device: device.clone(), mac: mac.clone() })] {
                prop_assert_eq!(PakeFrame::decode(&frame.encode().unwrap()).unwrap(), frame);
            }
        }
    }

    fn keys(name: &str) -> Arc<DeviceKeys> {
        Arc::new(DeviceKeys::generate(name).unwrap())
    }

    #[test]
    fn frames_round_trip_and_oversized_or_garbage_frames_are_refused() {
        let frame = PakeFrame::Pake(PakeMessage(vec![7; 33]));
        assert_eq!(PakeFrame::decode(&frame.encode().unwrap()).unwrap(), frame);
        assert!(matches!(PakeFrame::decode(&[0xc1]), Err(TransferError::Protocol(_))));
        assert!(matches!(PakeFrame::decode(&vec![0x90; MAX_PAKE_FRAME + 1]), Err(TransferError::Protocol(_))));
    }

    #[tokio::test]
    async fn the_pake_then_a_pinned_connection_over_one_socket() {
        let code: TransferCode = "7-maple-orbit".parse().unwrap();
        let (a_keys, b_keys) = (keys("a"), keys("b"));
        let (a_info, b_info) = (a_keys.info(vec![]).unwrap(), b_keys.info(vec![]).unwrap());
        let (x, y) = MemorySocket::pair(16, 64 * 1024);
        let wait = Duration::from_secs(5);
        let (a, b) = tokio::join!(
            authenticate(&x, &code, CodeRole::Creator, &a_info, wait),
            authenticate(&y, &code, CodeRole::Joiner, &b_info, wait)
        );
        let (seen_by_a, seen_by_b) = (a.unwrap(), b.unwrap());
        assert_eq!(seen_by_a, b_info);
        assert_eq!(seen_by_b, a_info);
        let (dialed, accepted) = tokio::join!(
            Connection::connect(Box::new(x), pinned_config(a_keys, seen_by_a.clone()), Some(seen_by_a.device_id)),
            Connection::accept(Box::new(y), pinned_config(b_keys, seen_by_b))
        );
        assert_eq!(dialed.unwrap().remote().device_id, b_info.device_id);
        assert_eq!(accepted.unwrap().remote().device_id, a_info.device_id);
    }

    #[tokio::test]
    async fn a_device_other_than_the_confirmed_one_is_refused() {
        let (a_keys, mallory) = (keys("a"), keys("mallory"));
        let confirmed = keys("b").info(vec![]).unwrap();
        let (x, y) = MemorySocket::pair(16, 64 * 1024);
        let trusting = ConnectionConfig::new(mallory, |_: &DeviceInfo| TrustLevel::Trusted);
        let (dialed, _) = tokio::join!(
            Connection::connect(Box::new(x), pinned_config(a_keys, confirmed), None),
            Connection::accept(Box::new(y), trusting)
        );
        assert!(dialed.is_err());
    }
}
