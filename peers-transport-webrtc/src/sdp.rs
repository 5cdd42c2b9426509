//! The few things we read from SDP text ourselves: the DTLS certificate fingerprint
//! (for the channel binding) and the peer's maximum message size. Pure functions.
//!
//! ```text
//! a=fingerprint:sha-256 4A:AD:B9:…:2F      (32 bytes, hex pairs joined by ':')
//! a=max-message-size:262144                 (RFC 8841; absent means 65536)
//! ```

use crate::error::{Error, Result};

/// The message size an endpoint may assume when the peer's SDP does not say
/// (RFC 8841, section 6.1).
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 65_536;

/// The SHA-256 certificate fingerprint an SDP declares (session or media level).
/// Refuses SDP without one, with a malformed one, or with two that differ.
pub fn sha256_fingerprint(sdp: &str) -> Result<[u8; 32]> {
    let mut found: Option<[u8; 32]> = None;
    for line in sdp.lines() {
        let Some(value) = line.trim_end().strip_prefix("a=fingerprint:") else { continue };
        let Some((algorithm, hex)) = value.split_once(' ') else {
            return Err(Error::Fingerprint("fingerprint attribute without a value".into()));
        };
        if !algorithm.eq_ignore_ascii_case("sha-256") {
            continue;
        }
        let parsed = parse_fingerprint(hex.trim())?;
        match found {
            Some(previous) if previous != parsed => {
                return Err(Error::Fingerprint("sdp declares two different sha-256 fingerprints".into()));
            }
            _ => found = Some(parsed),
        }
    }
    found.ok_or_else(|| Error::Fingerprint("sdp has no sha-256 fingerprint".into()))
}

fn parse_fingerprint(hex: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut parts = hex.split(':');
    for byte in out.iter_mut() {
        let part = parts.next().ok_or_else(|| Error::Fingerprint("sha-256 fingerprint too short".into()))?;
        if part.len() != 2 {
            return Err(Error::Fingerprint("malformed fingerprint byte".into()));
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| Error::Fingerprint("fingerprint is not hex".into()))?;
    }
    if parts.next().is_some() {
        return Err(Error::Fingerprint("sha-256 fingerprint too long".into()));
    }
    Ok(out)
}

/// Formats a fingerprint as SDP writes it (upper-case hex pairs joined by `:`).
pub fn format_fingerprint(fingerprint: &[u8]) -> String {
    fingerprint.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The largest message the SDP's author accepts: `a=max-message-size`, 65,536 when
/// absent, and `None` for 0 ("any size").
pub(crate) fn max_message_size(sdp: &str) -> Option<usize> {
    let declared = sdp
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=max-message-size:"))
        .find_map(|value| value.trim().parse::<u64>().ok());
    match declared {
        None => Some(DEFAULT_MAX_MESSAGE_SIZE),
        Some(0) => None,
        Some(size) => Some(usize::try_from(size).unwrap_or(usize::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:3C:1A:36:1D:3F:5E:28:CD:A2:A6:6F:2F";

    #[test]
    fn reads_the_sha256_fingerprint() {
        let sdp = format!("v=0\r\na=fingerprint:sha-1 AA:BB\r\nm=application 9\r\na=fingerprint:sha-256 {FP}\r\n");
        let fp = sha256_fingerprint(&sdp).unwrap();
        assert_eq!(fp[0], 0x4a);
        assert_eq!(fp[31], 0x2f);
        assert_eq!(format_fingerprint(&fp), FP);
    }

    #[test]
    fn refuses_missing_malformed_or_conflicting_fingerprints() {
        assert!(sha256_fingerprint("v=0\r\n").is_err());
        assert!(sha256_fingerprint("a=fingerprint:sha-256 AA:BB\r\n").is_err());
        assert!(sha256_fingerprint(&format!("a=fingerprint:sha-256 {FP}:00\r\n")).is_err());
        assert!(sha256_fingerprint(&format!("a=fingerprint:sha-256 {}\r\n", FP.replace('4', "G"))).is_err());
        let other = FP.replace("4A", "4B");
        let both = format!("a=fingerprint:sha-256 {FP}\r\na=fingerprint:sha-256 {other}\r\n");
        assert!(sha256_fingerprint(&both).is_err());
    }

    #[test]
    fn reads_the_max_message_size() {
        assert_eq!(max_message_size("v=0\r\n"), Some(65_536));
        assert_eq!(max_message_size("a=max-message-size:262144\r\n"), Some(262_144));
        assert_eq!(max_message_size("a=max-message-size:0\r\n"), None);
    }
}
