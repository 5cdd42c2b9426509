//! Bounding text that comes from, or goes to, the network.

/// Cuts `text` to at most `max` bytes, on a char boundary (so it stays valid
/// UTF-8 and never panics on a multi-byte char).
///
/// ```
/// let mut reason = String::from("día");
/// peers_sdk::text::truncate(&mut reason, 2); // "í" is two bytes: cut before it
/// assert_eq!(reason, "d");
/// ```
pub fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}
