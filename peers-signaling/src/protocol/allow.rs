//! Privacy by trust: the list of devices that may reach a device, which it
//! gives the server signed, at registration (`"register"` with `"allow"`) or
//! later (`"allow"`).
//!
//! ```text
//! register v3 = "peers/v1 signaling register" || nonce (32) || origin || 0x00 || ids
//! allow       = "peers/v1 signaling allow"    || nonce (32) || origin || 0x00
//!               || counter (u64 big-endian) || 0x00 (no list) | 0x01 || ids (only after 0x01)
//! ids         = count (u16 big-endian) || id_1 || … || id_count   (20 raw bytes each, strictly ascending)
//! ```
//!
//! `nonce` is the connection's registration challenge and `origin` the one
//! the registration signed, so an `"allow"` request is bound to one
//! connection; `counter` must grow with every request on it, so a recorded
//! request cannot be replayed there either. An origin never holds a 0x00
//! byte (it is printable ASCII), so the version 2 message (which ends with
//! the origin) and these can never be the same bytes.

use std::collections::BTreeSet;

use peers_sdk::DeviceId;
use serde::{Deserialize, Serialize};

use super::validate::{decode_fixed, parse_device_id};
use super::{ErrorCode, NONCE_LEN, REGISTER_DOMAIN, Rejection};

/// The most devices one allow list may name.
pub const MAX_ALLOW: usize = 1024;
/// The domain-separation prefix of an `"allow"` request's signature.
pub const ALLOW_DOMAIN: &[u8] = b"peers/v1 signaling allow";

/// A device's allow list, canonical: each id once, in ascending order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowList(BTreeSet<DeviceId>);

impl AllowList {
    /// The list of `devices` (duplicates count once).
    ///
    /// # Errors
    /// `too_large` when more than [`MAX_ALLOW`] distinct devices are named.
    pub fn new(devices: impl IntoIterator<Item = DeviceId>) -> Result<AllowList, Rejection> {
        let set: BTreeSet<DeviceId> = devices.into_iter().collect();
        if set.len() > MAX_ALLOW {
            return Err(Rejection::new(
                ErrorCode::TooLarge,
                format!("an allow list names at most {MAX_ALLOW} devices"),
            ));
        }
        Ok(AllowList(set))
    }

    /// Parses the wire form (device ids as 40 hex digits).
    pub(crate) fn parse(ids: &[String]) -> Result<AllowList, Rejection> {
        if ids.len() > MAX_ALLOW {
            return Err(Rejection::new(
                ErrorCode::TooLarge,
                format!("an allow list names at most {MAX_ALLOW} devices"),
            ));
        }
        AllowList::new(ids.iter().map(|id| parse_device_id("allow", id)).collect::<Result<Vec<_>, _>>()?)
    }

    /// Whether `device` is on the list.
    pub fn contains(&self, device: &DeviceId) -> bool {
        self.0.contains(device)
    }

    /// How many devices it names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it names nobody (the device may be reached by no one).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The devices, ascending.
    pub fn iter(&self) -> impl Iterator<Item = &DeviceId> {
        self.0.iter()
    }

    /// The wire form: device ids as hex, ascending.
    pub fn to_wire(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// `count (u16 BE) || ids`, as signed.
    fn encode_into(&self, out: &mut Vec<u8>) {
        // At most MAX_ALLOW (1024) entries, so the count fits.
        out.extend_from_slice(&u16::try_from(self.0.len()).unwrap_or(u16::MAX).to_be_bytes());
        for id in &self.0 {
            out.extend_from_slice(id.as_bytes());
        }
    }
}

/// The message a device signs to register with an allow list (version 3):
/// the version 2 message ([`register_message`](super::register_message)),
/// a 0x00 byte, then the list.
pub fn register_message_v3(nonce: &[u8; NONCE_LEN], origin: &str, allow: &AllowList) -> Vec<u8> {
    let mut message = Vec::with_capacity(REGISTER_DOMAIN.len() + NONCE_LEN + origin.len() + 3 + 20 * allow.len());
    message.extend_from_slice(REGISTER_DOMAIN);
    message.extend_from_slice(nonce);
    message.extend_from_slice(origin.as_bytes());
    message.push(0);
    allow.encode_into(&mut message);
    message
}

/// The message a device signs to replace its allow list on a connection:
/// [`ALLOW_DOMAIN`], the connection's challenge nonce, the origin its
/// registration signed, 0x00, `counter` (big-endian), then 0x00 for "no
/// list" (everyone may reach it) or 0x01 and the list.
pub fn allow_message(nonce: &[u8; NONCE_LEN], origin: &str, counter: u64, allow: Option<&AllowList>) -> Vec<u8> {
    let mut message = Vec::with_capacity(ALLOW_DOMAIN.len() + NONCE_LEN + origin.len() + 12);
    message.extend_from_slice(ALLOW_DOMAIN);
    message.extend_from_slice(nonce);
    message.extend_from_slice(origin.as_bytes());
    message.push(0);
    message.extend_from_slice(&counter.to_be_bytes());
    match allow {
        None => message.push(0),
        Some(list) => {
            message.push(1);
            list.encode_into(&mut message);
        }
    }
    message
}

/// `"allow"` (client → server): replace this device's allow list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRequest {
    /// Correlates the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// The devices that may reach this one (at most [`MAX_ALLOW`]); `null`:
    /// everyone may (no list).
    pub allow: Option<Vec<String>>,
    /// Greater than every counter used before on this connection.
    pub counter: u64,
    /// ed25519 over [`allow_message`], base64 (64 bytes).
    pub signature: String,
}

/// An `"allow"` request, parsed: the signature is checked by the server
/// against the connection's challenge and counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowUpdate {
    /// The new list; `None`: everyone may reach the device.
    pub allow: Option<AllowList>,
    /// The request's counter.
    pub counter: u64,
    /// The signature over [`allow_message`].
    pub signature: ed25519_dalek::Signature,
}

impl AllowUpdate {
    pub(crate) fn parse(request: AllowRequest) -> Result<AllowUpdate, Rejection> {
        let allow = request.allow.as_deref().map(AllowList::parse).transpose()?;
        let signature = decode_fixed::<64>("signature", &request.signature)?;
        Ok(AllowUpdate { allow, counter: request.counter, signature: ed25519_dalek::Signature::from_bytes(&signature) })
    }
}

/// Signs an `"allow"` request for a connection whose challenge was `nonce`
/// and whose registration signed `origin`.
pub fn sign_allow(
    keys: &peers_sdk::DeviceKeys,
    nonce: &[u8; NONCE_LEN],
    origin: &str,
    counter: u64,
    allow: Option<&AllowList>,
) -> AllowRequest {
    let signature = keys.sign(&allow_message(nonce, origin, counter, allow));
    AllowRequest { req: None, allow: allow.map(AllowList::to_wire), counter, signature: super::encode(&signature) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DeviceId {
        format!("{n:02x}").repeat(20).parse().unwrap()
    }

    #[test]
    fn the_list_is_canonical_and_bounded() {
        let list = AllowList::new([id(3), id(1), id(3)]).unwrap();
        assert_eq!(list.iter().copied().collect::<Vec<_>>(), vec![id(1), id(3)]);
        let many = (0..=MAX_ALLOW).map(|n| {
            let mut hex = format!("{n:040x}");
            hex.truncate(40);
            hex.parse::<DeviceId>().unwrap()
        });
        assert_eq!(AllowList::new(many).unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn the_v3_message_is_the_v2_message_then_zero_then_the_ids() {
        let nonce = [9u8; NONCE_LEN];
        let list = AllowList::new([id(2), id(1)]).unwrap();
        let message = register_message_v3(&nonce, "http://a:1", &list);
        let v2 = super::super::register_message(&nonce, "http://a:1");
        assert_eq!(&message[..v2.len()], &v2[..]);
        let rest = &message[v2.len()..];
        assert_eq!(&rest[..3], &[0, 0, 2]);
        assert_eq!(&rest[3..23], id(1).as_bytes());
        assert_eq!(&rest[23..], id(2).as_bytes());
    }

    #[test]
    fn allow_messages_differ_by_counter_and_list() {
        let nonce = [1u8; NONCE_LEN];
        let empty = AllowList::default();
        let a = allow_message(&nonce, "http://a:1", 1, Some(&empty));
        assert_ne!(a, allow_message(&nonce, "http://a:1", 2, Some(&empty)));
        assert_ne!(a, allow_message(&nonce, "http://a:1", 1, None));
        assert_eq!(&a[a.len() - 3..], &[1, 0, 0]);
    }
}
