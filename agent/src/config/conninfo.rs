//! libpq connection strings: parsing `key=value` strings and `postgresql://` URLs
//! the way libpq does, and writing `key=value` strings back with libpq's quoting.

use std::borrow::Cow;

/// The connection parameters libpq (PostgreSQL 17) accepts. Anything else makes
/// libpq refuse the connection string with `invalid connection option`.
pub const LIBPQ_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

/// Parameters whose value is a secret: never shown, never allowed in the file.
pub(crate) const SECRET_KEYWORDS: &[&str] = &["password", "sslpassword"];

/// What is wrong with a connection string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConninfoError {
    /// The string is empty or blank.
    #[error("the connection string is empty")]
    Empty,
    /// A `key` without `=value`.
    #[error("missing \"=\" after \"{0}\"")]
    MissingEquals(String),
    /// A quoted value without its closing quote.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A key libpq does not know.
    #[error("invalid connection option \"{0}\"")]
    UnknownKeyword(String),
    /// A `%` not followed by two hex digits, or an escape that is not UTF-8.
    #[error("invalid percent-encoded token \"{0}\"")]
    BadPercentEncoding(String),
    /// A URL libpq would reject.
    #[error("invalid URL: {0}")]
    BadUrl(String),
}

/// Parses a libpq connection string (`key=value` pairs or a `postgresql://` /
/// `postgres://` URL) into its parameters, in order of first appearance; a key
/// given twice keeps its last value, as in libpq.
pub fn parse_conninfo(s: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    if s.trim().is_empty() {
        return Err(ConninfoError::Empty);
    }
    let pairs = if let Some(rest) = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
    {
        parse_url(rest)?
    } else {
        parse_key_values(s)?
    };
    let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        if !LIBPQ_KEYWORDS.contains(&k.as_str()) {
            return Err(ConninfoError::UnknownKeyword(k));
        }
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(out)
}

/// libpq's `conninfo_parse`: whitespace-separated `key = value`, values optionally
/// in single quotes, backslash escaping the next character in either form.
fn parse_key_values(s: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    let mut chars = s.chars().peekable();
    let mut out = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|&c| c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            return Err(ConninfoError::MissingEquals(key));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(ConninfoError::UnterminatedQuote),
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(c) = chars.next() {
                        value.push(c);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// libpq's `conninfo_uri_parse_options`, after the scheme:
/// `[user[:password]@][host[:port][,...]][/dbname][?param=value&...]`.
fn parse_url(rest: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: String| {
        if !v.is_empty() {
            out.push((k.to_owned(), v));
        }
    };

    // Authority ends at the first '/' or '?'.
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let hostlist = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            push("user", percent_decode(user)?);
            if let Some(p) = password {
                push("password", percent_decode(p)?);
            }
            &authority[at + 1..]
        }
        None => authority,
    };

    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    if !hostlist.is_empty() {
        for item in hostlist.split(',') {
            let (host, port) = if let Some(v6) = item.strip_prefix('[') {
                let close = v6.find(']').ok_or_else(|| {
                    ConninfoError::BadUrl(format!("missing \"]\" in IPv6 host address \"{item}\""))
                })?;
                let after = &v6[close + 1..];
                let port = match after.strip_prefix(':') {
                    Some(p) => p,
                    None if after.is_empty() => "",
                    None => {
                        return Err(ConninfoError::BadUrl(format!(
                            "unexpected \"{after}\" after IPv6 host address"
                        )));
                    }
                };
                (v6[..close].to_owned(), port)
            } else {
                match item.split_once(':') {
                    Some((h, p)) => (percent_decode(h)?, p),
                    None => (percent_decode(item)?, ""),
                }
            };
            hosts.push(host);
            ports.push(percent_decode(port)?);
        }
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        push("host", hosts.join(","));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        push("port", ports.join(","));
    }

    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    if let Some(db) = path.strip_prefix('/') {
        push("dbname", percent_decode(db)?);
    }
    if let Some(query) = query {
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = param.split_once('=').ok_or_else(|| {
                ConninfoError::BadUrl(format!("missing key/value separator \"=\" in \"{param}\""))
            })?;
            let (k, v) = (percent_decode(k)?, percent_decode(v)?);
            // libpq's one JDBC compatibility rule.
            if k == "ssl" && v == "true" {
                push("sslmode", "require".to_owned());
            } else {
                push(&k, v);
            }
        }
    }
    Ok(out)
}

/// Decodes `%XX` escapes (`percent-encoding`); like libpq, refuses a `%` not followed
/// by two hex digits (the crate passes those through) and bytes that are not UTF-8.
fn percent_decode(s: &str) -> Result<String, ConninfoError> {
    let malformed = s.split('%').skip(1).any(|rest| {
        !rest
            .as_bytes()
            .get(..2)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(ConninfoError::BadPercentEncoding(s.to_owned()));
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| ConninfoError::BadPercentEncoding(s.to_owned()))
}

/// Quotes a value for a libpq `key=value` string: an empty value, or one with
/// whitespace, a single quote or a backslash, goes in single quotes with `'` and
/// `\` escaped by a backslash; anything else is written as is.
pub fn quote_conninfo_value(value: &str) -> Cow<'_, str> {
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if !needs_quotes {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    Cow::Owned(out)
}

/// Writes parameters as a libpq `key=value` string.
pub fn render_conninfo<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", k.as_ref(), quote_conninfo_value(v.as_ref())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The parameters with every secret value replaced by `********`.
pub(crate) fn redact_params(params: &[(String, String)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| {
            if SECRET_KEYWORDS.contains(&k.as_str()) {
                (k.clone(), "********".to_owned())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

/// A connection string safe to show: parsed and re-rendered with secrets masked,
/// or a placeholder when it does not parse (it might hold a password anywhere).
pub(crate) fn redact_conninfo(s: &str) -> String {
    match parse_conninfo(s) {
        Ok(params) => render_conninfo(&redact_params(&params)),
        Err(_) => "<invalid connection string>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn key_value_strings_parse_like_libpq() {
        assert_eq!(
            parse_conninfo("host=/var/run/postgresql port=5432 user=pga_monitor dbname=postgres")
                .unwrap(),
            kv(&[
                ("host", "/var/run/postgresql"),
                ("port", "5432"),
                ("user", "pga_monitor"),
                ("dbname", "postgres")
            ])
        );
        assert_eq!(
            parse_conninfo("  host = db1   application_name='my app'  ").unwrap(),
            kv(&[("host", "db1"), ("application_name", "my app")])
        );
        assert_eq!(
            parse_conninfo(r"options='-c a=\'b c\'' sslrootcert=C:\\x dbname=''").unwrap(),
            kv(&[
                ("options", "-c a='b c'"),
                ("sslrootcert", r"C:\x"),
                ("dbname", "")
            ])
        );
        // The last of a repeated key wins, in the place of the first.
        assert_eq!(
            parse_conninfo("host=a port=1 host=b").unwrap(),
            kv(&[("host", "b"), ("port", "1")])
        );
    }

    #[test]
    fn key_value_errors_match_libpq() {
        assert_eq!(parse_conninfo("   "), Err(ConninfoError::Empty));
        assert_eq!(
            parse_conninfo("host=a dbname"),
            Err(ConninfoError::MissingEquals("dbname".into()))
        );
        assert_eq!(
            parse_conninfo("host='a"),
            Err(ConninfoError::UnterminatedQuote)
        );
        assert_eq!(
            parse_conninfo("hots=a"),
            Err(ConninfoError::UnknownKeyword("hots".into()))
        );
    }

    #[test]
    fn urls_parse_like_libpq() {
        assert_eq!(
            parse_conninfo("postgresql://mon@db1.example.com:5433/app?sslmode=verify-full")
                .unwrap(),
            kv(&[
                ("user", "mon"),
                ("host", "db1.example.com"),
                ("port", "5433"),
                ("dbname", "app"),
                ("sslmode", "verify-full")
            ])
        );
        assert_eq!(
            parse_conninfo("postgres://%2Fvar%2Frun%2Fpostgresql/postgres").unwrap(),
            kv(&[("host", "/var/run/postgresql"), ("dbname", "postgres")])
        );
        assert_eq!(
            parse_conninfo("postgresql://[::1]:5432,h2/db?ssl=true").unwrap(),
            kv(&[
                ("host", "::1,h2"),
                ("port", "5432,"),
                ("dbname", "db"),
                ("sslmode", "require")
            ])
        );
        assert_eq!(parse_conninfo("postgresql://").unwrap(), kv(&[]));
        assert_eq!(
            parse_conninfo("postgresql://u:p%40ss@h/").unwrap(),
            kv(&[("user", "u"), ("password", "p@ss"), ("host", "h")])
        );
        assert!(matches!(
            parse_conninfo("postgresql://h/db?bogus=1"),
            Err(ConninfoError::UnknownKeyword(k)) if k == "bogus"
        ));
        assert!(matches!(
            parse_conninfo("postgresql://h/db%zz"),
            Err(ConninfoError::BadPercentEncoding(_))
        ));
        // Like libpq: an escape cut short or not UTF-8 is refused, UTF-8 is decoded.
        for bad in [
            "postgresql://h/db%4",
            "postgresql://h/db%",
            "postgresql://h/%ff",
        ] {
            assert!(
                matches!(
                    parse_conninfo(bad),
                    Err(ConninfoError::BadPercentEncoding(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            parse_conninfo("postgresql://h/caf%C3%A9").unwrap(),
            kv(&[("host", "h"), ("dbname", "café")])
        );
        assert!(matches!(
            parse_conninfo("postgresql://[::1/db"),
            Err(ConninfoError::BadUrl(_))
        ));
    }

    #[test]
    fn values_are_quoted_per_libpq_rules() {
        assert_eq!(quote_conninfo_value("db1"), "db1");
        assert_eq!(
            quote_conninfo_value("/var/run/postgresql"),
            "/var/run/postgresql"
        );
        assert_eq!(quote_conninfo_value("a=b"), "a=b");
        assert_eq!(quote_conninfo_value(""), "''");
        assert_eq!(quote_conninfo_value("my app"), "'my app'");
        assert_eq!(quote_conninfo_value("it's"), r"'it\'s'");
        assert_eq!(quote_conninfo_value(r"C:\pg"), r"'C:\\pg'");
        assert_eq!(quote_conninfo_value("tab\there"), "'tab\there'");
    }

    #[test]
    fn rendering_round_trips_through_the_parser() {
        let params = kv(&[
            ("host", "/tmp/sock dir"),
            ("user", "o'brien"),
            ("dbname", r"back\slash"),
            ("application_name", ""),
            ("options", "-c statement_timeout=5000"),
        ]);
        let s = render_conninfo(&params);
        assert_eq!(
            s,
            r"host='/tmp/sock dir' user='o\'brien' dbname='back\\slash' application_name='' options='-c statement_timeout=5000'"
        );
        assert_eq!(parse_conninfo(&s).unwrap(), params);
    }

    #[test]
    fn redaction_hides_secrets_and_unparseable_strings() {
        let shown = redact_conninfo("host=h password='a b' sslpassword=x user=u");
        assert_eq!(
            shown,
            "host=h password=******** sslpassword=******** user=u"
        );
        let shown = redact_conninfo("postgresql://u:hunter2@h/db");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            redact_conninfo("password='hunter2"),
            "<invalid connection string>"
        );
    }
}
