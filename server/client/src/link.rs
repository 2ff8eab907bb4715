//! Share-link URLs and hub addresses.
//!
//! A link is `weft://HOST:PORT/s/SESSION#TOKEN`: the hub's address, the
//! session, and the secret after `#` (a fragment never reaches a server or
//! its logs). This module only parses; it connects to nothing.

use anyhow::{Context as _, bail};

/// Where a session lives and how to enter it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// `host:port` of the hub.
    pub authority: String,
    pub session: String,
    pub token: String,
}

impl Link {
    /// Parses a link URL.
    pub fn parse(link: &str) -> anyhow::Result<Link> {
        let url = url::Url::parse(link.trim()).context("the link is not a URL")?;
        if url.scheme() != "weft" {
            bail!("links start with weft:// (got {}://)", url.scheme());
        }
        let host = url.host_str().context("the link has no host")?;
        let port = url.port().unwrap_or(7420);
        let mut segments = url.path_segments().context("the link has no path")?;
        let (Some("s"), Some(session), None) = (segments.next(), segments.next(), segments.next()) else {
            bail!("the link's path must be /s/SESSION");
        };
        let token = url.fragment().filter(|t| !t.is_empty()).context("the link has no #TOKEN part")?;
        if !weft_protocol::SessionId::is_well_formed(session) {
            bail!("the link's session id is not valid");
        }
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
        Ok(Link { authority: format!("{host}:{port}"), session: session.to_owned(), token: token.to_owned() })
    }

    /// The weft-protocol WebSocket URL of the session.
    pub fn ws_url(&self) -> String {
        ws_url(&self.authority, &self.session)
    }
}

/// The weft-protocol WebSocket URL of `session` on the hub at `authority`.
pub fn ws_url(authority: &str, session: &str) -> String {
    format!("ws://{authority}/ws/{session}")
}

/// `host:port` of a hub given as `ws://host:port`, `http://host:port` or `host:port`.
pub fn hub_authority(hub: &str) -> anyhow::Result<String> {
    let hub = hub.trim().trim_end_matches('/');
    let rest = hub
        .strip_prefix("ws://")
        .or_else(|| hub.strip_prefix("http://"))
        .or_else(|| hub.strip_prefix("weft://"))
        .unwrap_or(hub);
    if rest.starts_with("wss://") || hub.starts_with("https://") || hub.starts_with("wss://") {
        bail!("TLS hubs (wss://, https://) are not supported by this bridge yet");
    }
    if rest.is_empty() || rest.contains('/') {
        bail!("a hub address looks like ws://HOST:PORT (got {hub:?})");
    }
    Ok(rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_links() {
        let link = Link::parse("weft://127.0.0.1:9000/s/abc_D-1#tok-en").expect("valid");
        assert_eq!(
            link,
            Link { authority: "127.0.0.1:9000".into(), session: "abc_D-1".into(), token: "tok-en".into() }
        );
        assert_eq!(link.ws_url(), "ws://127.0.0.1:9000/ws/abc_D-1");
        for bad in
            ["", "weft://h:1/s/abc", "ftp://h/s/a#t", "weft://h:1/x/abc#t", "weft://h:1/s/a/b#t", "weft://h:1/s/..#t"]
        {
            assert!(Link::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hub_addresses() {
        assert_eq!(hub_authority("ws://127.0.0.1:7420/").expect("ok"), "127.0.0.1:7420");
        assert_eq!(hub_authority("localhost:1").expect("ok"), "localhost:1");
        assert!(hub_authority("wss://x:1").is_err());
        assert!(hub_authority("ws://x:1/y").is_err());
    }
}
