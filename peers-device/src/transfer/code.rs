//! Transfer codes: a session number and words, `7-crossover-clockwork` style.
//!
//! ```text
//!   7 - maple - orbit
//!   │     └──────┴── the PAKE password's secret part: 2 to 4 words from WORDS (8 bits each)
//!   └── the signaling session's number (public: it only finds the session)
//! ```
//!
//! The whole code (number and words) is the password of the PAKE ([`super::pake`]), so
//! the number binds the password to one session. The server sees the number, never the
//! words. Two words give 16 bits; since a wrong guess burns the session (one guess per
//! code), an attacker who races the real receiver wins with probability 2^-16 and is
//! noticed either way.

use std::fmt;
use std::str::FromStr;

use rand_core::{OsRng, RngCore};

use super::TransferError;

/// Words in a code when the caller does not say (16 bits of password).
pub const DEFAULT_WORDS: usize = 2;
/// Fewest words a code may have.
pub const MIN_WORDS: usize = 2;
/// Most words a code may have (32 bits).
pub const MAX_WORDS: usize = 4;
/// Largest session number a code may carry.
pub const MAX_SESSION_NUMBER: u32 = 999_999;
/// Longest code text accepted by [`TransferCode::from_str`], in bytes.
pub const MAX_CODE_LEN: usize = 64;

/// The built-in word list: 256 words, each with a distinct 4-letter prefix (so a prefix
/// identifies a word), lowercase ASCII, sorted.
pub const WORDS: [&str; 256] = [
    "acorn", "actor", "agent", "album", "alpine", "amber", "anchor", "angle", "apple", "apron", "arch", "arena",
    "arrow", "aspen", "atlas", "attic", "autumn", "badge", "bagel", "bakery", "bamboo", "banjo", "barley", "basket",
    "beacon", "beaver", "berry", "bicycle", "blanket", "blossom", "bonfire", "border", "bottle", "bracket", "breeze",
    "bridge", "brook", "bucket", "buffalo", "bunny", "butter", "cabin", "cactus", "camel", "candle", "canoe", "canyon",
    "captain", "carbon", "carpet", "castle", "cedar", "cellar", "cherry", "chimney", "circus", "citrus", "clover",
    "cobalt", "coconut", "comet", "compass", "copper", "coral", "cotton", "cradle", "crayon", "cricket", "crystal",
    "cupcake", "curtain", "daisy", "dancer", "delta", "desert", "diamond", "dinner", "dolphin", "donkey", "dragon",
    "eagle", "easel", "echo", "eclipse", "elbow", "ember", "emerald", "engine", "falcon", "feather", "ferry", "fiddle",
    "flute", "forest", "fossil", "fountain", "fox", "galaxy", "garden", "garlic", "gazelle", "geyser", "ginger",
    "glacier", "granite", "gravel", "guitar", "hammer", "harbor", "harvest", "hazel", "helmet", "heron", "hollow",
    "honey", "horizon", "husky", "iceberg", "igloo", "indigo", "island", "ivory", "jacket", "jaguar", "jasmine",
    "jelly", "jigsaw", "jungle", "kayak", "kettle", "kiwi", "koala", "ladder", "lagoon", "lantern", "laptop", "lemon",
    "leopard", "lilac", "linen", "lizard", "lobster", "locket", "lotus", "magnet", "mango", "maple", "marble",
    "meadow", "melon", "meteor", "mitten", "mosaic", "muffin", "museum", "napkin", "nectar", "needle", "nickel",
    "noodle", "oasis", "ocean", "olive", "onion", "orbit", "orchid", "otter", "oyster", "paddle", "palace", "panda",
    "papaya", "parrot", "peanut", "pebble", "pelican", "pepper", "piano", "pickle", "pigeon", "pillow", "pilot",
    "pine", "pirate", "planet", "plaza", "pocket", "polar", "poppy", "potato", "prairie", "pretzel", "puffin",
    "pumpkin", "puzzle", "quartz", "quill", "rabbit", "radar", "raisin", "raven", "ribbon", "river", "rocket",
    "saddle", "salmon", "sandal", "satin", "scarf", "seagull", "shadow", "silver", "sketch", "sparrow", "spider",
    "spruce", "squirrel", "stadium", "summit", "sunset", "swan", "tablet", "tango", "teapot", "temple", "thunder",
    "tiger", "timber", "toffee", "tomato", "topaz", "tractor", "trumpet", "tulip", "tundra", "turtle", "umbrella",
    "unicorn", "valley", "velvet", "violin", "volcano", "waffle", "walnut", "walrus", "wander", "whistle", "willow",
    "window", "winter", "wizard", "wombat", "yogurt", "zebra", "zenith", "zipper",
];

/// A transfer code: a session number and the words of the PAKE password.
///
/// ```
/// use peers_device::transfer::TransferCode;
///
/// let code: TransferCode = " 7-Maple-ORBIT ".parse()?;
/// assert_eq!(code.session(), 7);
/// assert_eq!(code.to_string(), "7-maple-orbit");
/// # Ok::<(), peers_device::transfer::TransferError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TransferCode {
    session: u32,
    words: Vec<u8>,
}

impl TransferCode {
    /// A fresh code for `session` with `words` random words (clamped to
    /// [`MIN_WORDS`]..=[`MAX_WORDS`]).
    pub fn generate(session: u32, words: usize) -> Result<Self, TransferError> {
        check_session(session)?;
        let mut picked = vec![0u8; words.clamp(MIN_WORDS, MAX_WORDS)];
        OsRng.fill_bytes(&mut picked);
        Ok(Self { session, words: picked })
    }

    /// The signaling session's number.
    pub fn session(&self) -> u32 {
        self.session
    }

    /// The words, in order.
    pub fn words(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.words.iter().filter_map(|&w| WORDS.get(usize::from(w)).copied())
    }

    /// The PAKE password: the canonical text of the whole code.
    pub fn password(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// The link to the receive page at `page` (the path the signaling server named)
    /// of the server at `url`, with the code as the fragment: a browser never sends a
    /// fragment to the server, so the words stay between the two devices. `None`
    /// without a page, or for a page that is not a path on that server.
    pub fn receive_link(&self, url: &str, page: Option<&str>) -> Option<String> {
        let page = page.filter(|p| p.starts_with('/') && !p.starts_with("//"))?;
        let mut link = url::Url::parse(url).ok()?.join(page).ok()?;
        link.set_fragment(Some(&self.to_string()));
        Some(link.into())
    }
}

fn check_session(session: u32) -> Result<(), TransferError> {
    if session == 0 || session > MAX_SESSION_NUMBER {
        return Err(TransferError::BadCode(format!("session number must be 1 to {MAX_SESSION_NUMBER}")));
    }
    Ok(())
}

/// The index of `word` in [`WORDS`]: the whole word, or a prefix of at least 4 letters
/// that only one word has.
fn word_index(word: &str) -> Option<u8> {
    if let Ok(i) = WORDS.binary_search(&word) {
        return u8::try_from(i).ok();
    }
    if word.len() < 4 {
        return None;
    }
    let mut matches = WORDS.iter().enumerate().filter(|(_, w)| w.starts_with(word));
    match (matches.next(), matches.next()) {
        (Some((i, _)), None) => u8::try_from(i).ok(),
        _ => None,
    }
}

impl FromStr for TransferCode {
    type Err = TransferError;

    /// Reads a code forgivingly: surrounding space ignored, any case, `-` or spaces
    /// between the parts, and a unique 4-letter prefix for a word.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_CODE_LEN {
            return Err(TransferError::BadCode(format!("longer than {MAX_CODE_LEN} bytes")));
        }
        let lower = text.trim().to_ascii_lowercase();
        let mut parts = lower.split(|c: char| c == '-' || c.is_whitespace()).filter(|p| !p.is_empty());
        let number = parts.next().ok_or_else(|| TransferError::BadCode("empty code".into()))?;
        let session =
            number.parse::<u32>().map_err(|_| TransferError::BadCode(format!("{number:?} is not a session number")))?;
        check_session(session)?;
        let words = parts
            .map(|w| word_index(w).ok_or_else(|| TransferError::BadCode(format!("{w:?} is not a code word"))))
            .collect::<Result<Vec<u8>, _>>()?;
        if !(MIN_WORDS..=MAX_WORDS).contains(&words.len()) {
            return Err(TransferError::BadCode(format!(
                "a code has {MIN_WORDS} to {MAX_WORDS} words after the number, not {}",
                words.len()
            )));
        }
        Ok(Self { session, words })
    }
}

impl fmt::Display for TransferCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.session)?;
        for word in self.words() {
            write!(f, "-{word}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TransferCode {
    /// Shows the session number only: the words are a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferCode").field("session", &self.session).field("words", &"<secret>").finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_word_list_is_sorted_unique_and_prefix_distinct() {
        assert!(WORDS.windows(2).all(|w| w[0] < w[1]));
        let mut prefixes: Vec<&str> = WORDS.iter().map(|w| &w[..w.len().min(4)]).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        assert_eq!(prefixes.len(), WORDS.len());
        assert!(WORDS.iter().all(|w| w.bytes().all(|b| b.is_ascii_lowercase())));
    }

    #[test]
    fn codes_are_read_forgivingly() {
        let code: TransferCode = "12 Maple  orbi".parse().unwrap();
        assert_eq!(code.to_string(), "12-maple-orbit");
        assert_eq!(code.password(), b"12-maple-orbit");
    }

    #[test]
    fn bad_codes_are_refused_with_a_reason() {
        for (text, why) in [
            ("", "empty"),
            ("maple-orbit", "session number"),
            ("0-maple-orbit", "session number"),
            ("7-maple", "2 to 4 words"),
            ("7-maple-orbit-apple-arch-bagel", "2 to 4 words"),
            ("7-maple-xyzzy", "not a code word"),
            ("7-ma-orbit", "not a code word"),
            ("7-maple-orbit-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "longer"),
        ] {
            let err = text.parse::<TransferCode>().unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_receive_link_carries_the_code_in_its_fragment_on_the_same_server() {
        let code: TransferCode = "7-maple-orbit".parse().expect("code");
        let link = |url, page| code.receive_link(url, page);
        assert_eq!(
            link("http://127.0.0.1:7000", Some("/receive/")).as_deref(),
            Some("http://127.0.0.1:7000/receive/#7-maple-orbit")
        );
        assert_eq!(
            link("https://sig.example/", Some("/receive/")).as_deref(),
            Some("https://sig.example/receive/#7-maple-orbit")
        );
        assert_eq!(link("http://127.0.0.1:7000", None), None, "no page, no link");
        for elsewhere in ["//evil.example/", "https://evil.example/", "receive/"] {
            assert_eq!(link("http://127.0.0.1:7000", Some(elsewhere)), None, "{elsewhere}");
        }
    }

    #[test]
    fn debug_hides_the_words() {
        let code = TransferCode::generate(3, 3).unwrap();
        let shown = format!("{code:?}");
        assert!(code.words().all(|w| !shown.contains(w)), "{shown}");
    }

    proptest! {
        #[test]
        fn a_generated_code_reads_back(session in 1u32..=MAX_SESSION_NUMBER, words in 0usize..8) {
            let code = TransferCode::generate(session, words).unwrap();
            prop_assert!((MIN_WORDS..=MAX_WORDS).contains(&code.words().count()));
            prop_assert_eq!(code.to_string().parse::<TransferCode>().unwrap(), code);
        }

        #[test]
        fn any_text_parses_or_errs_without_panic(text in ".{0,80}") {
            let _ = text.parse::<TransferCode>();
        }
    }
}
