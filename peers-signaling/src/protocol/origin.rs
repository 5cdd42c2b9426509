//! The server origin a registration signature covers.
//!
//! A device signs the origin of the URL it dialed, so a signature made for
//! one server is refused by every other (a malicious server, or a man in the
//! middle of `ws://`, cannot register the device elsewhere with it). The
//! origin is written one way only:
//!
//! ```text
//! origin = scheme "://" host ":" port
//!   scheme  "http" or "https" (a ws:// URL is http, wss:// is https)
//!   host    lowercase as in the URL; an IPv6 address in brackets ("[::1]")
//!   port    decimal, always present (80 for http, 443 for https when the URL has none)
//! ```
//!
//! For example `http://127.0.0.1:7000`, `https://signal.example:443`,
//! `http://[::1]:7000`.

use url::Url;

/// The longest origin, in bytes.
pub const MAX_ORIGIN_LEN: usize = 255;

/// The canonical origin of `url` (see the module docs), or why it has none.
pub fn server_origin(url: &str) -> Result<String, String> {
    let parsed = Url::parse(url).map_err(|err| format!("{url:?} is not a URL: {err}"))?;
    let scheme = match parsed.scheme() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => return Err(format!("{url:?}: the scheme {other:?} is not http, https, ws or wss")),
    };
    let host = parsed.host_str().ok_or_else(|| format!("{url:?} has no host"))?;
    let port = parsed.port().unwrap_or(if scheme == "https" { 443 } else { 80 });
    let origin = format!("{scheme}://{host}:{port}");
    if origin.len() > MAX_ORIGIN_LEN {
        return Err(format!("the origin of {url:?} is over {MAX_ORIGIN_LEN} bytes"));
    }
    Ok(origin)
}

/// The origins a server accepts when it was given none: the `Host` header
/// (`host[:port]`) it received, with either scheme (the server does not know
/// whether a TLS proxy stood in front of it). Without a port: port 80 for
/// http and 443 for https.
pub fn origins_of_host(host: &str) -> Vec<String> {
    ["http", "https"].iter().filter_map(|scheme| server_origin(&format!("{scheme}://{host}")).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_written_one_way() {
        for (url, origin) in [
            ("http://127.0.0.1:7000", "http://127.0.0.1:7000"),
            ("http://127.0.0.1:7000/", "http://127.0.0.1:7000"),
            ("ws://Signal.Example:7000/socket.io/?EIO=4", "http://signal.example:7000"),
            ("https://signal.example", "https://signal.example:443"),
            ("wss://signal.example/", "https://signal.example:443"),
            ("http://signal.example", "http://signal.example:80"),
            ("http://[::1]:9000", "http://[::1]:9000"),
            ("HTTP://[2001:DB8::1]", "http://[2001:db8::1]:80"),
        ] {
            assert_eq!(server_origin(url).unwrap(), origin, "{url}");
        }
        for bad in ["ftp://x", "not a url", "http://", "file:///tmp"] {
            assert!(server_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_host_header_gives_both_schemes() {
        assert_eq!(origins_of_host("127.0.0.1:7000"), ["http://127.0.0.1:7000", "https://127.0.0.1:7000"]);
        assert_eq!(origins_of_host("signal.example"), ["http://signal.example:80", "https://signal.example:443"]);
        assert!(origins_of_host("bad host").is_empty());
    }
}
