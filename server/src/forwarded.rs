//! The effective scheme, host and remote address of a request, for everything that builds
//! absolute URLs (tus `Location`) or reports who asked (an access log).
//!
//! Without `--behind-proxy` the connection is the truth: TLS or not gives the scheme, the
//! request's authority (the HTTP/2 `:authority` or an absolute-form target, else `Host`; RFC
//! 9112 §3.2.2) the host, the peer the remote address. With `--behind-proxy`, the first element
//! of `Forwarded` (RFC 7239 §4: the one the proxy nearest the client wrote), then
//! `X-Forwarded-Proto`/`-Host`/`-For` override them (tusd's `RespectForwardedHeaders`); only
//! then, since any client can send them. `--public-url` fixes scheme, host and a path prefix
//! for every URL ferryd hands out, whatever the request says. Values that are not a plain
//! `http`/`https`, a well-formed host or an IP address are ignored, so nothing a client sends
//! can put another shape of URL into a response.

use std::net::{IpAddr, SocketAddr};

use http::{header, HeaderMap, HeaderName, Request};

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// What the accept loop knows about a connection, handed to every request on it (the router
/// also puts it in the request's extensions, where [`Frontend`] finds it).
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub tls: bool,
    /// Beyond `--max-connections-per-ip`: every request gets 429 (the limit).
    pub refused: Option<u32>,
}

/// How ferryd is reached from outside: `--public-url` and `--behind-proxy`.
#[derive(Debug, Clone, Default)]
pub struct Frontend {
    pub public_url: Option<PublicUrl>,
    pub behind_proxy: bool,
}

/// `--public-url`: `scheme://authority` and a path prefix without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    origin: String,
    prefix: String,
}

impl std::str::FromStr for PublicUrl {
    type Err = String;

    /// Accepts `http(s)://host[:port][/prefix]`, nothing else (no user info, query or
    /// fragment).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected http(s)://host[:port][/path], got {s:?}");
        let uri: http::Uri = s.parse().map_err(|_| bad())?;
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        let scheme = scheme
            .filter(|s| s == "http" || s == "https")
            .ok_or_else(bad)?;
        let host = uri
            .authority()
            .map(|a| a.as_str())
            .filter(|a| valid_host(a));
        let host = host.ok_or_else(bad)?;
        if uri.query().is_some() || s.contains('#') {
            return Err(bad());
        }
        Ok(PublicUrl {
            origin: format!("{scheme}://{host}"),
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }
}

/// A request as seen from outside ferryd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// `host[:port]` without a default port; `None` when the request names none.
    pub host: Option<String>,
    /// The client's address; `None` only without connection information (in-process tests).
    pub remote: Option<IpAddr>,
}

impl Frontend {
    /// Scheme, host and remote address of `req`.
    /// The client's address alone, as [`Frontend::effective`] gives it, without building
    /// the scheme and host (the access log needs only this, on every request).
    pub fn remote<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        self.behind_proxy
            .then(|| Proxied::parse(req.headers()).remote)
            .flatten()
            .or_else(|| req.extensions().get::<ConnInfo>().map(|c| c.peer.ip()))
    }

    pub fn effective<B>(&self, req: &Request<B>) -> Effective {
        let conn = req.extensions().get::<ConnInfo>();
        let h = req.headers();
        let proxied = self.behind_proxy.then(|| Proxied::parse(h));
        let proxied = proxied.as_ref();
        let scheme = proxied
            .and_then(|p| p.proto)
            .unwrap_or(if conn.is_some_and(|c| c.tls) {
                "https"
            } else {
                "http"
            });
        let host = proxied
            .and_then(|p| p.host.clone())
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
            .or_else(|| header_str(h, &header::HOST).map(str::to_string))
            .filter(|v| valid_host(v))
            .map(|v| without_default_port(scheme, &v.to_ascii_lowercase()));
        let remote = proxied
            .and_then(|p| p.remote)
            .or_else(|| conn.map(|c| c.peer.ip()));
        Effective {
            scheme,
            host,
            remote,
        }
    }

    /// The start of every absolute URL in an answer to `req`, without a trailing `/`:
    /// `--public-url`, else `scheme://host` of the request (the connection's local address
    /// when it names no host).
    pub fn base_url<B>(&self, req: &Request<B>) -> String {
        if let Some(p) = &self.public_url {
            return format!("{}{}", p.origin, p.prefix);
        }
        let e = self.effective(req);
        let local = req.extensions().get::<ConnInfo>().and_then(|c| c.local);
        let host = e.host.unwrap_or_else(|| match local {
            Some(a) => without_default_port(e.scheme, &a.to_string()),
            None => "localhost".into(),
        });
        format!("{}://{host}", e.scheme)
    }
}

/// What the proxy headers say, each part only when well-formed.
#[derive(Debug, Default)]
struct Proxied {
    proto: Option<&'static str>,
    host: Option<String>,
    remote: Option<IpAddr>,
}

impl Proxied {
    fn parse(h: &HeaderMap) -> Self {
        let mut p = Proxied::default();
        // RFC 7239 wins over the de-facto headers; the first element of each.
        if let Some(first) = header_str(h, &header::FORWARDED).and_then(|v| v.split(',').next()) {
            for pair in first.split(';') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "proto" => p.proto = p.proto.or(proto(v)),
                    "host" => p.host = p.host.take().or(Some(v.to_string())),
                    "for" => p.remote = p.remote.or(node_ip(v)),
                    _ => {}
                }
            }
        }
        let first = |name: &HeaderName| {
            header_str(h, name)
                .and_then(|v| v.split(',').next())
                .map(str::trim)
        };
        p.proto = p
            .proto
            .or_else(|| first(&X_FORWARDED_PROTO).and_then(proto));
        p.host = p.host.filter(|v| valid_host(v));
        p.host = p
            .host
            .or_else(|| first(&X_FORWARDED_HOST).map(str::to_string));
        p.host = p.host.filter(|v| valid_host(v));
        p.remote = p
            .remote
            .or_else(|| first(&X_FORWARDED_FOR).and_then(node_ip));
        p
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn proto(v: &str) -> Option<&'static str> {
    match v.to_ascii_lowercase().as_str() {
        "http" => Some("http"),
        "https" => Some("https"),
        _ => None,
    }
}

/// An RFC 7239 node (`192.0.2.1`, `"[2001:db8::1]:4711"`, `198.51.100.7:80`) or an
/// X-Forwarded-For entry, as an IP address; `unknown` and obfuscated names give `None`.
fn node_ip(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Ok(ip) = v.parse() {
        return Some(ip);
    }
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    v.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// `host[:port]` as RFC 3986 allows it (reg-name of unreserved characters, IPv4, or an IPv6
/// literal in brackets), at most 255 bytes; no user info.
fn valid_host(v: &str) -> bool {
    let chars_ok = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~:[]%".contains(&b));
    !v.is_empty()
        && v.len() <= 255
        && chars_ok
        && v.parse::<http::uri::Authority>().is_ok_and(|a| {
            let port = v.strip_prefix(a.host()).unwrap_or(":");
            let port_ok = port.is_empty()
                || port
                    .strip_prefix(':')
                    .is_some_and(|p| p.parse::<u16>().is_ok());
            !a.host().is_empty() && port_ok
        })
}

fn without_default_port(scheme: &str, host: &str) -> String {
    let default = if scheme == "https" { ":443" } else { ":80" };
    host.strip_suffix(default).unwrap_or(host).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)], tls: bool) -> Request<()> {
        let mut b = http::Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b.body(()).unwrap();
        req.extensions_mut().insert(ConnInfo {
            peer: "10.0.0.9:5555".parse().unwrap(),
            local: Some("127.0.0.1:8080".parse().unwrap()),
            tls,
            refused: None,
        });
        req
    }

    fn direct() -> Frontend {
        Frontend::default()
    }

    fn proxy() -> Frontend {
        Frontend {
            behind_proxy: true,
            ..Frontend::default()
        }
    }

    #[test]
    fn connection_gives_scheme_host_and_remote() {
        let p = parts("/files/", &[("host", "Files.Example:8443")], true);
        let e = direct().effective(&p);
        assert_eq!(e.scheme, "https");
        assert_eq!(e.host.as_deref(), Some("files.example:8443"));
        assert_eq!(e.remote, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(direct().base_url(&p), "https://files.example:8443");
    }

    #[test]
    fn default_ports_are_dropped() {
        let p = parts("/", &[("host", "a.example:80")], false);
        assert_eq!(direct().base_url(&p), "http://a.example");
        let p = parts("/", &[("host", "a.example:443")], true);
        assert_eq!(direct().base_url(&p), "https://a.example");
        let p = parts("/", &[("host", "a.example:443")], false);
        assert_eq!(direct().base_url(&p), "http://a.example:443");
    }

    // RFC 9112 §3.2.2: an absolute-form target (and the HTTP/2 :authority) wins over Host.
    #[test]
    fn target_authority_wins_over_host() {
        let p = parts("http://b.example/files/", &[("host", "a.example")], false);
        assert_eq!(direct().base_url(&p), "http://b.example");
    }

    #[test]
    fn proxy_headers_are_ignored_unless_behind_proxy() {
        let hs = [
            ("host", "inner:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "outer.example"),
            ("x-forwarded-for", "203.0.113.5"),
        ];
        let p = parts("/", &hs, false);
        assert_eq!(direct().base_url(&p), "http://inner:8080");
        assert_eq!(
            direct().effective(&p).remote,
            Some("10.0.0.9".parse().unwrap())
        );
        assert_eq!(proxy().base_url(&p), "https://outer.example");
        // remote() is effective().remote without the rest.
        assert_eq!(direct().remote(&p), direct().effective(&p).remote);
        assert_eq!(proxy().remote(&p), proxy().effective(&p).remote);
        assert_eq!(
            proxy().effective(&p).remote,
            Some("203.0.113.5".parse().unwrap())
        );
    }

    // RFC 7239 §4: the first element is the one the proxy nearest the client wrote; it wins
    // over the X-Forwarded-* headers.
    #[test]
    fn forwarded_first_element_wins() {
        let hs = [
            ("host", "inner"),
            (
                "forwarded",
                "for=\"[2001:db8::1]:4711\";proto=HTTPS;host=\"up.example:8443\", for=10.1.1.1;host=evil",
            ),
            ("x-forwarded-host", "other.example"),
            ("x-forwarded-proto", "http"),
        ];
        let p = parts("/", &hs, false);
        let e = proxy().effective(&p);
        assert_eq!(e.scheme, "https");
        assert_eq!(e.host.as_deref(), Some("up.example:8443"));
        assert_eq!(e.remote, Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn malformed_values_fall_back() {
        let hs = [
            ("host", "inner:81"),
            ("forwarded", "for=unknown;proto=gopher;host=\"a/b\""),
            ("x-forwarded-host", "x@evil.example"),
            ("x-forwarded-for", "_hidden, 1.2.3.4"),
        ];
        let p = parts("/", &hs, false);
        let e = proxy().effective(&p);
        assert_eq!(e.scheme, "http");
        assert_eq!(e.host.as_deref(), Some("inner:81"));
        assert_eq!(e.remote, Some("10.0.0.9".parse().unwrap()));
        for bad in ["", "a b", "a/b", "u@h", "h:port", "h?x", "[::1"] {
            assert!(!valid_host(bad), "{bad:?}");
        }
        for good in [
            "h",
            "h:1",
            "[::1]:8080",
            "192.0.2.1",
            "xn--d1acpjx3f.example",
        ] {
            assert!(valid_host(good), "{good:?}");
        }
    }

    #[test]
    fn without_a_host_the_local_address_is_used() {
        let p = parts("/", &[], false);
        assert_eq!(direct().effective(&p).host, None);
        assert_eq!(direct().base_url(&p), "http://127.0.0.1:8080");
    }

    #[test]
    fn public_url_overrides_everything() {
        let f = Frontend {
            public_url: Some("HTTPS://files.example/ferry/".parse().unwrap()),
            behind_proxy: true,
        };
        let p = parts("/", &[("host", "x"), ("x-forwarded-host", "y")], false);
        assert_eq!(f.base_url(&p), "https://files.example/ferry");
        let root: PublicUrl = "http://127.0.0.1:9".parse().unwrap();
        assert_eq!(
            (root.origin.as_str(), root.prefix.as_str()),
            ("http://127.0.0.1:9", "")
        );
        for bad in [
            "ftp://x/",
            "/just/a/path",
            "http://u@x/",
            "http://x/?q=1",
            "http://x/#f",
            "x",
        ] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad:?}");
        }
    }
}
