//! What the crate prints of text it does not control, in errors and warnings: a URL without
//! its userinfo or query string (where credentials travel, `?api_key=…`), and a collector's,
//! proxy's or server's words escaped and bounded, so a hostile answer cannot forge lines or
//! send terminal escapes to stderr (and, through the ZenML helper, into a step's logs).

use std::fmt::Write as _;

/// The most characters of a collector's text that are shown.
pub(crate) const MAX_SHOWN: usize = 512;

/// `url` without userinfo, query string or fragment: `https://h:1/v1/logs?key=s` is shown as
/// `https://h:1/v1/logs?…`, escaped like any other text.
pub(crate) fn url(url: &str) -> String {
    let (rest, cut) = match url.find(['?', '#']) {
        Some(at) => (&url[..at], true),
        None => (url, false),
    };
    let shown = match rest.find("://") {
        Some(scheme_end) => {
            let after = scheme_end + 3;
            let authority_end = rest[after..].find('/').map_or(rest.len(), |i| after + i);
            match rest[after..authority_end].rfind('@') {
                Some(at) => format!("{}…@{}", &rest[..after], &rest[after + at + 1..]),
                None => rest.to_owned(),
            }
        }
        None => rest.to_owned(),
    };
    let mut shown = untrusted(&shown);
    if cut {
        shown.push_str("?…");
    }
    shown
}

/// `text` with control characters (and backslashes) escaped as Rust writes them, cut to
/// [`MAX_SHOWN`] characters with `…` after a cut.
pub(crate) fn untrusted(text: &str) -> String {
    let mut shown = String::with_capacity(text.len().min(MAX_SHOWN) + 8);
    for (n, c) in text.chars().enumerate() {
        if n == MAX_SHOWN {
            shown.push('…');
            break;
        }
        if c.is_control() || c == '\\' {
            let _ = write!(shown, "{}", c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_loses_its_userinfo_and_query() {
        assert_eq!(
            url("https://user:pw@h:1/v1/logs?api_key=SECRET#f"),
            "https://…@h:1/v1/logs?…"
        );
        assert_eq!(url("http://h/v1/logs"), "http://h/v1/logs");
        assert_eq!(
            url("http://h/a@b"),
            "http://h/a@b",
            "an @ in the path is no userinfo"
        );
        assert_eq!(url("h:4317"), "h:4317");
    }

    #[test]
    fn untrusted_text_is_escaped_and_bounded() {
        assert_eq!(untrusted("a\u{1b}[31mb\nc\\"), "a\\u{1b}[31mb\\nc\\\\");
        let long = "é".repeat(MAX_SHOWN + 10);
        let shown = untrusted(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN + 1);
        assert!(shown.ends_with('…'));
    }
}
