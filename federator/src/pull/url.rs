//! An agent's base URL (`agents[].url`): `https://HOST[:PORT]` or, for a plaintext
//! endpoint on this host, `http://127.0.0.1[:PORT]`.

use std::fmt;

/// The port of an agent's endpoint when the URL names none.
pub const DEFAULT_AGENT_PORT: u16 = 9187;

/// A parsed agent URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUrl {
    /// `https` (mutual TLS) rather than `http`.
    pub tls: bool,
    /// Host name or IP address, without brackets; the name the agent's certificate
    /// must carry.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Why an agent URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{url}\": {problem}")]
pub struct UrlError {
    url: String,
    problem: &'static str,
}

impl UrlError {
    /// What to write instead.
    pub fn fix(&self) -> &'static str {
        "write https://HOST:PORT (the agent's [endpoint] listen port, 9187 by default); \
         http:// only for an agent on 127.0.0.1, ::1 or localhost"
    }
}

impl AgentUrl {
    /// Parses `scheme://host[:port][/]`.
    pub fn parse(url: &str) -> Result<AgentUrl, UrlError> {
        let err = |problem| UrlError {
            url: url.to_owned(),
            problem,
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(err("the scheme must be https:// (or http:// on loopback)"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(err(
                "give only scheme, host and port: the federator adds the /v1 paths",
            ));
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| err("unclosed [ in the host"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(err("unexpected text after ]")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        let port = match port {
            None => DEFAULT_AGENT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| err("the port must be a number from 1 to 65535"))?,
        };
        let u = AgentUrl {
            tls,
            host: host.to_owned(),
            port,
        };
        if !tls && !u.is_loopback() {
            return Err(err(
                "plain http:// is only allowed on a loopback address; agents serve mutual TLS",
            ));
        }
        Ok(u)
    }

    /// Whether the host is `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// `host:port` for connecting (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for AgentUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_schemes() {
        let u = AgentUrl::parse("https://db-1.example.com:9443/").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (true, "db-1.example.com", 9443)
        );
        let u = AgentUrl::parse("https://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", DEFAULT_AGENT_PORT));
        assert_eq!(u.authority(), "[::1]:9187");
        assert!(!AgentUrl::parse("http://127.0.0.1:8080").unwrap().tls);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            "db1:9187",
            "ftp://db1",
            "https://",
            "https://db1:0",
            "https://db1:99999",
            "https://db1/v1/blocks",
            "http://db1.example.com:9187",
            "https://[::1",
        ] {
            assert!(AgentUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
