//! Share-link URLs and hub addresses.
//!
//! A link is `weft://HOST:PORT/s/SESSION#TOKEN` (or `weft+tls://...` for a
//! hub that serves TLS): the hub's address, the session, and the secret
//! after `#` (a fragment never reaches a server or its logs). This module
//! only parses; it connects to nothing (see [`crate::tls`] for the rules
//! about which hubs a client talks to).

use anyhow::{Context as _, bail};

/// The hub port when a link or hub address names none (the hub's default).
pub const DEFAULT_PORT: u16 = 7420;

/// A hub's address, and whether it speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubAddr {
    /// `host:port` (an IPv6 host in brackets).
    pub authority: String,
    /// `wss://` and `https://` (links `weft+tls://`) instead of `ws://` and
    /// `http://` (links `weft://`).
    pub tls: bool,
}

impl HubAddr {
    /// A plain (no TLS) hub at `authority`, e.g. an embedded hub on loopback.
    pub fn plain(authority: impl Into<String>) -> HubAddr {
        HubAddr { authority: authority.into(), tls: false }
    }

    /// Parses a hub address: `wss://`, `https://` or `weft+tls://HOST:PORT`
    /// for a TLS hub; `ws://`, `http://`, `weft://HOST:PORT` or a bare
    /// `HOST:PORT` for a plain one. The port defaults to [`DEFAULT_PORT`].
    pub fn parse(hub: &str) -> anyhow::Result<HubAddr> {
        let hub = hub.trim();
        let (tls, rest) = [("wss://", true), ("https://", true), ("weft+tls://", true)]
            .into_iter()
            .chain([("ws://", false), ("http://", false), ("weft://", false)])
            .find_map(|(prefix, tls)| hub.strip_prefix(prefix).map(|rest| (tls, rest)))
            .unwrap_or((false, hub));
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains("://") {
            bail!("a hub address looks like wss://HOST:PORT or ws://HOST:PORT (got {hub:?})");
        }
        // A non-special scheme keeps the port exactly as written (`wss://`
        // would drop an explicit 443 as its default).
        let url = url::Url::parse(&format!("weft://{rest}"))
            .with_context(|| format!("a hub address looks like wss://HOST:PORT (got {hub:?})"))?;
        Ok(HubAddr { authority: authority_of(&url)?, tls })
    }

    /// The weft-protocol WebSocket URL of `session` on this hub.
    pub fn ws_url(&self, session: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws/{session}", self.authority)
    }

    /// The host without the port (and without an IPv6 address's brackets),
    /// as a TLS server name.
    pub fn host(&self) -> &str {
        let host = match self.authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => &self.authority,
        };
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// Whether the hub is on this machine (`localhost`, 127.0.0.0/8, `::1`).
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(self.host())
    }
}

/// Whether `host` (no brackets) names this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host:port` of a parsed `weft://` or `weft+tls://` URL.
fn authority_of(url: &url::Url) -> anyhow::Result<String> {
    let host = url.host_str().filter(|h| !h.is_empty()).context("no host")?;
    if !url.username().is_empty() || url.password().is_some() {
        bail!("a hub address has no user name or password");
    }
    let port = url.port().unwrap_or(DEFAULT_PORT);
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    Ok(format!("{host}:{port}"))
}

/// Where a session lives and how to enter it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The hub.
    pub hub: HubAddr,
    pub session: String,
    pub token: String,
}

impl Link {
    /// Parses a link URL (`weft://` or `weft+tls://`).
    pub fn parse(link: &str) -> anyhow::Result<Link> {
        let url = url::Url::parse(link.trim()).context("the link is not a URL")?;
        let tls = match url.scheme() {
            "weft" => false,
            "weft+tls" => true,
            other => bail!("links start with weft:// or weft+tls:// (got {other}://)"),
        };
        let authority = authority_of(&url).context("the link has no valid hub address")?;
        let mut segments = url.path_segments().context("the link has no path")?;
        let (Some("s"), Some(session), None) = (segments.next(), segments.next(), segments.next()) else {
            bail!("the link's path must be /s/SESSION");
        };
        let token = url.fragment().filter(|t| !t.is_empty()).context("the link has no #TOKEN part")?;
        if !weft_protocol::SessionId::is_well_formed(session) {
            bail!("the link's session id is not valid");
        }
        Ok(Link { hub: HubAddr { authority, tls }, session: session.to_owned(), token: token.to_owned() })
    }

    /// The weft-protocol WebSocket URL of the session.
    pub fn ws_url(&self) -> String {
        self.hub.ws_url(&self.session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_links() {
        let link = Link::parse("weft://127.0.0.1:9000/s/abc_D-1#tok-en").expect("valid");
        assert_eq!(
            link,
            Link { hub: HubAddr::plain("127.0.0.1:9000"), session: "abc_D-1".into(), token: "tok-en".into() }
        );
        assert_eq!(link.ws_url(), "ws://127.0.0.1:9000/ws/abc_D-1");
        let tls = Link::parse("weft+tls://hub.example.com/s/abc#t").expect("valid");
        assert_eq!(tls.hub, HubAddr { authority: "hub.example.com:7420".into(), tls: true });
        assert_eq!(tls.ws_url(), "wss://hub.example.com:7420/ws/abc");
        let v6 = Link::parse("weft+tls://[::1]:443/s/abc#t").expect("valid");
        assert_eq!((v6.hub.authority.as_str(), v6.hub.host()), ("[::1]:443", "::1"));
        for bad in [
            "",
            "weft://h:1/s/abc",
            "ftp://h/s/a#t",
            "wss://h/s/a#t",
            "weft://h:1/x/abc#t",
            "weft://h:1/s/a/b#t",
            "weft://h:1/s/..#t",
            "weft://u:p@h:1/s/a#t",
        ] {
            assert!(Link::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hub_addresses() {
        let parse = |s| HubAddr::parse(s).map(|h| (h.authority, h.tls)).ok();
        assert_eq!(parse("ws://127.0.0.1:7420/"), Some(("127.0.0.1:7420".into(), false)));
        assert_eq!(parse("localhost:1"), Some(("localhost:1".into(), false)));
        assert_eq!(parse("http://h"), Some(("h:7420".into(), false)));
        assert_eq!(parse("wss://x:443"), Some(("x:443".into(), true)));
        assert_eq!(parse("https://x:1"), Some(("x:1".into(), true)));
        assert_eq!(parse("weft+tls://[::1]:9"), Some(("[::1]:9".into(), true)));
        for bad in ["ws://x:1/y", "", "wss://", "ftp://x:1", "ws://u@x:1", "x:99999"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for host in ["127.0.0.1:1", "127.1.2.3:1", "localhost:1", "LocalHost", "[::1]:7420"] {
            assert!(HubAddr::parse(host).expect("valid").is_loopback(), "{host}");
        }
        for host in ["0.0.0.0:1", "10.0.0.1:1", "hub.example.com:1", "[::]:1", "localhost.example.com:1"] {
            assert!(!HubAddr::parse(host).expect("valid").is_loopback(), "{host}");
        }
    }
}
