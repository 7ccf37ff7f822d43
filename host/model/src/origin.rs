//! HTTP origins: what an `http:` capability names and what a request is checked against.
//!
//! A granted origin is `scheme://host[:port]` (the port defaults to 80 or 443), and its host
//! may start with `*.` to cover every subdomain, as in Spin's `allowed_outbound_hosts`. An op
//! that calls hosts its input names declares `http:*`: any origin the rule grants.

/// One origin, or a pattern of origins: scheme, host (maybe `*.domain`), port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name or address; `*.example.com` in a pattern.
    pub host: String,
    /// The port, the scheme's default when not written.
    pub port: u16,
}

impl Origin {
    /// Reads `scheme://host[:port]`, with an optional trailing `/` and nothing after it.
    pub fn parse(s: &str) -> Result<Origin, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!(
                "`{s}` is not an origin: write scheme://host[:port], e.g. https://api.example.com"
            )
        })?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("`{s}`: the scheme must be http or https")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{s}`: an origin has no path, query or user: write {scheme}://HOST[:PORT]"
            ));
        }
        let (host, port) = split_port(authority)
            .map_err(|e| format!("`{s}`: {e}"))?
            .unwrap_or((authority, default_port));
        let host = host.to_ascii_lowercase();
        let bare = host.strip_prefix("*.").unwrap_or(&host);
        if bare.is_empty() || bare.contains('*') {
            return Err(format!(
                "`{s}`: the host is missing or has a `*` other than a leading `*.`"
            ));
        }
        Ok(Origin { scheme, host, port })
    }

    /// The origin of a URL such as `https://api.example.com/v1/status?x=1`.
    pub fn of_url(url: &str) -> Result<Origin, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an absolute http(s) URL"))?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let origin = Origin::parse(&format!("{scheme}://{authority}"))?;
        if origin.host.starts_with("*.") {
            return Err(format!("`{url}`: a URL's host cannot be a pattern"));
        }
        Ok(origin)
    }

    /// Whether this pattern covers `other` (a concrete origin or a narrower pattern).
    pub fn covers(&self, other: &Origin) -> bool {
        if self.scheme != other.scheme || self.port != other.port {
            return false;
        }
        if self.host == other.host {
            return true;
        }
        match self.host.strip_prefix("*.") {
            Some(domain) => other
                .host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => false,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// `host:port`, `[v6]:port` or `[v6]`; `None` when no port is written.
fn split_port(authority: &str) -> Result<Option<(&str, u16)>, String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing `]`")?;
        match after.strip_prefix(':') {
            Some(p) => (v6, p),
            None if after.is_empty() => return Ok(None),
            None => return Err("unexpected text after the IPv6 address".into()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => return Ok(None),
        }
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{port}` is not a port number"))?;
    Ok(Some((host, port)))
}

#[cfg(test)]
mod tests {
    use super::Origin;

    #[test]
    fn origins_normalise_and_match() {
        let o = Origin::parse("HTTPS://Api.Example.com/").unwrap();
        assert_eq!(o.to_string(), "https://api.example.com:443");
        assert_eq!(
            Origin::parse("http://127.0.0.1:8080").unwrap().to_string(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(Origin::parse("http://[::1]").unwrap().port, 80);

        let url = Origin::of_url("https://api.example.com/v1?q=1").unwrap();
        assert!(o.covers(&url));
        assert!(!o.covers(&Origin::of_url("http://api.example.com/").unwrap()));
        assert!(!o.covers(&Origin::of_url("https://api.example.com:8443/").unwrap()));

        let wild = Origin::parse("https://*.example.com").unwrap();
        assert!(wild.covers(&url));
        assert!(!wild.covers(&Origin::of_url("https://example.com/").unwrap()));
        assert!(!wild.covers(&Origin::of_url("https://evilexample.com/").unwrap()));
        assert!(!wild.covers(&Origin::of_url("https://user@evil.com/").unwrap()));
    }

    #[test]
    fn bad_origins_say_why() {
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://ex*ample.com",
            "https://example.com:99999",
            "https://",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad} parsed");
        }
    }
}
