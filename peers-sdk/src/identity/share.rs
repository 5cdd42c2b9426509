//! Share codes: a [`DeviceInfo`] as printable, QR-friendly text, for `peers trust`.
//!
//! ```text
//! PEERS1 || BASE32(MessagePack(DeviceInfo))      (RFC 4648 alphabet, no padding)
//! ```
//!
//! Base32 uses only `A-Z` and `2-7`, which a QR code stores in its compact
//! alphanumeric mode. Parsing ignores case, spaces, line breaks and `-`, so a
//! code can be split for reading aloud or typed by hand. A share code is not a
//! secret and not a proof: the handshake proves the device holds the keys in it.

use data_encoding::BASE32_NOPAD;

use super::DeviceInfo;
use crate::error::{Error, Result};

/// The prefix of every share code (format version 1).
pub const SHARE_CODE_PREFIX: &str = "PEERS1";

/// The longest share code accepted, in characters.
pub const MAX_SHARE_CODE_LEN: usize = 4096;

impl DeviceInfo {
    /// This device info as a share code.
    pub fn to_share_code(&self) -> String {
        // Encoding a DeviceInfo cannot fail: every field is a plain value.
        let bytes = rmp_serde::to_vec_named(self).unwrap_or_default();
        format!("{SHARE_CODE_PREFIX}{}", BASE32_NOPAD.encode(&bytes))
    }

    /// Reads and validates a share code.
    pub fn from_share_code(code: &str) -> Result<DeviceInfo> {
        let invalid = |detail: &str| Error::InvalidInput { what: "share code", detail: detail.into() };
        if code.len() > MAX_SHARE_CODE_LEN {
            return Err(invalid("longer than 4096 characters"));
        }
        let cleaned: String =
            code.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_uppercase()).collect();
        let body = cleaned.strip_prefix(SHARE_CODE_PREFIX).ok_or_else(|| invalid("does not start with PEERS1"))?;
        let bytes = BASE32_NOPAD.decode(body.as_bytes()).map_err(|_| invalid("not base32"))?;
        let info: DeviceInfo =
            rmp_serde::from_slice(&bytes).map_err(|e| invalid(&format!("not a device info: {e}")))?;
        info.validate()?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKeys;

    #[test]
    fn a_share_code_round_trips_and_survives_formatting() {
        let info = DeviceKeys::generate("alice").unwrap().info(vec!["http://192.168.1.5:7700/".into()]).unwrap();
        let code = info.to_share_code();
        assert!(code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()), "{code}");
        assert_eq!(DeviceInfo::from_share_code(&code).unwrap(), info);
        let spaced: String = code
            .to_lowercase()
            .chars()
            .enumerate()
            .flat_map(|(i, c)| (i % 8 == 7).then_some('-').into_iter().chain([c]))
            .collect();
        assert_eq!(DeviceInfo::from_share_code(&spaced).unwrap(), info);
    }

    #[test]
    fn damaged_or_forged_codes_are_refused() {
        let info = DeviceKeys::generate("alice").unwrap().info(vec![]).unwrap();
        let code = info.to_share_code();
        assert!(DeviceInfo::from_share_code(&code[..code.len() - 7]).is_err());
        assert!(DeviceInfo::from_share_code(&format!("X{code}")).is_err());
        assert!(DeviceInfo::from_share_code(&"A".repeat(5000)).is_err());
        let mut forged = info.clone();
        forged.device_id = DeviceKeys::generate("mallory").unwrap().device_id();
        assert!(DeviceInfo::from_share_code(&forged.to_share_code()).is_err(), "device id not derived from the key");
    }
}
