//! Redaction of literals and passwords in log text.
//!
//! Three tools, all linear in the input and panic-free on any string:
//!
//! * [`redact`] lexes SQL the way PostgreSQL does (closely enough to be conservative) and
//!   replaces every string literal with `'?'` and every numeric literal with `?`:
//!   `'…'` with `''` escapes, `E'…'` with backslash escapes, `$$…$$` and `$tag$…$tag$`.
//!   Identifiers (`t1`, `"Mixed Case"`), parameters (`$1`), operators, keywords and
//!   comments' words are kept. The string replacement keeps its quotes (`'?'` rather
//!   than `?`) so a reader still sees that a string stood there. An unterminated literal
//!   is redacted up to the end of the text. Unlike PostgreSQL, `$` never continues an
//!   identifier here, so `a$$x$$` is read as `a` followed by a dollar-quoted literal:
//!   when in doubt this module redacts more, never less.
//! * [`redact_message`] is for the server's message text (not SQL): quoted values are
//!   replaced (`'…'` and `"…"`, the latter unless it follows a word naming an object,
//!   like `relation "t"` or `user "alice"`), and statement text that a message embeds
//!   (`statement: …`, `execute name: …`, `duration: 1.2 ms  statement: …`) goes through
//!   [`redact`]. Other numbers in messages are kept: in PostgreSQL's own messages they
//!   are counts, durations and pids, and the values a user supplied appear quoted.
//!   Free text a user's code raises (`RAISE LOG 'anything'`) cannot be told apart
//!   from the server's words and is only redacted where quoted.
//! * [`contains_password`] recognizes `CREATE|ALTER ROLE|USER|GROUP … PASSWORD` (any
//!   case and whitespace, `ENCRYPTED PASSWORD`, and what psql's `\password` sends);
//!   [`redact_entry`] then replaces the whole text by [`password_statement`]'s form
//!   `ALTER ROLE … PASSWORD <redacted>`, which carries nothing of the password, not
//!   even its length. This happens whether or not literal redaction is on.

use std::borrow::Cow;

use super::entry::LogEntry;

/// What a redacted string literal becomes.
pub const STRING_MARK: &str = "'?'";
/// What a redacted numeric literal becomes.
pub const NUMBER_MARK: &str = "?";
/// What a password-bearing statement's password becomes.
pub const PASSWORD_MARK: &str = "<redacted>";

/// Replaces the string and numeric literals of SQL text; see the module documentation.
pub fn redact(text: &str) -> Cow<'_, str> {
    let out = lex(text, Mode::Sql);
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

/// Replaces the quoted values of a server message and the literals of a statement it
/// embeds; see the module documentation.
pub fn redact_message(text: &str) -> Cow<'_, str> {
    if let Some(at) = embedded_statement_start(text) {
        let (head, sql) = text.split_at(at);
        let mut out = lex(head, Mode::Message);
        out.push_str(&lex(sql, Mode::Sql));
        return if out == text {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(out)
        };
    }
    let out = lex(text, Mode::Message);
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

/// Whether `text` holds a `CREATE`/`ALTER` `ROLE`/`USER`/`GROUP` statement with a
/// `PASSWORD` clause. Deliberately broad: any text where the words `create` or
/// `alter`, then `role`, `user` or `group`, then `password` appear, in that order, as
/// words, in any case and with anything between them.
pub fn contains_password(text: &str) -> bool {
    password_verb_object(text).is_some()
}

/// The replacement for a password-bearing statement: `ALTER ROLE … PASSWORD <redacted>`
/// with the statement's own verb and object word, or `None` when `text` bears none.
pub fn password_statement(text: &str) -> Option<String> {
    let (verb, object) = password_verb_object(text)?;
    Some(format!("{verb} {object} … PASSWORD {PASSWORD_MARK}"))
}

/// Applies the password rule always and literal redaction when `literals` is true to
/// an entry's message, statement, detail, hint and context, in place.
///
/// When any of them bears a password statement, the statement and message are replaced
/// by [`password_statement`]'s form and detail, hint and context are dropped, since
/// PostgreSQL may echo parts of the statement in them (`syntax error at or near …`).
pub fn redact_entry(entry: &mut LogEntry, literals: bool) {
    let texts = [
        Some(&entry.message),
        entry.statement.as_ref(),
        entry.detail.as_ref(),
        entry.hint.as_ref(),
        entry.context.as_ref(),
    ];
    let password = texts.iter().flatten().find_map(|t| password_statement(t));
    if let Some(replacement) = password {
        if entry.statement.is_some() {
            entry.statement = Some(replacement.clone());
            // The message may be a PostgreSQL message about the statement; keep its
            // shape but never a quoted or literal value.
            if contains_password(&entry.message) {
                entry.message = replacement;
            } else {
                entry.message = redact_message(&entry.message).into_owned();
            }
        } else {
            entry.message = replacement;
        }
        entry.detail = None;
        entry.hint = None;
        entry.context = None;
        return;
    }
    if !literals {
        return;
    }
    if let Cow::Owned(m) = redact_message(&entry.message) {
        entry.message = m;
    }
    if let Some(s) = entry.statement.as_mut()
        && let Cow::Owned(r) = redact(s)
    {
        *s = r;
    }
    for field in [&mut entry.detail, &mut entry.hint, &mut entry.context] {
        if let Some(s) = field.as_mut()
            && let Cow::Owned(r) = redact_message(s)
        {
            *s = r;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sql,
    Message,
}

/// Words after which a double-quoted string in a message names an object, not a value.
const OBJECT_WORDS: &[&str] = &[
    "relation",
    "table",
    "column",
    "index",
    "database",
    "role",
    "user",
    "schema",
    "function",
    "procedure",
    "aggregate",
    "constraint",
    "type",
    "sequence",
    "view",
    "extension",
    "tablespace",
    "trigger",
    "operator",
    "parameter",
    "path",
    "slot",
    "publication",
    "subscription",
    "domain",
    "collation",
    "server",
    "policy",
    "rule",
    "host",
    "identity",
    "file",
    "directory",
];

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The one lexer behind [`redact`] and [`redact_message`]. Every branch advances `i`
/// by at least one byte and never moves it backwards; searches for closing delimiters
/// start where the literal starts, so the whole pass is linear. All slicing happens at
/// ASCII bytes, hence at char boundaries.
fn lex(text: &str, mode: Mode) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident_cont(b[i]) {
                i += 1;
            }
            let word = &text[start..i];
            out.push_str(word);
            if i < b.len() && b[i] == b'\'' && word.eq_ignore_ascii_case("e") {
                i = skip_quoted(b, i, true);
                out.push_str(STRING_MARK);
            }
        } else if c == b'\'' {
            i = skip_quoted(b, i, false);
            out.push_str(STRING_MARK);
        } else if c == b'"' {
            let end = skip_double_quoted(b, i);
            if mode == Mode::Sql || follows_object_word(&b[..i]) {
                out.push_str(&text[i..end]);
            } else {
                out.push_str("\"?\"");
            }
            i = end;
        } else if c == b'$' {
            let mut j = i + 1;
            if j < b.len() && b[j].is_ascii_digit() {
                // A parameter: `$1`.
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                out.push_str(&text[i..j]);
                i = j;
                continue;
            }
            while j < b.len() && is_ident_cont(b[j]) {
                j += 1;
            }
            if j < b.len() && b[j] == b'$' {
                // `$tag$`: a dollar-quoted literal up to the same tag, or to the end.
                let tag = &text[i..=j];
                let body = j + 1;
                i = match text[body..].find(tag) {
                    Some(k) => body + k + tag.len(),
                    None => b.len(),
                };
                out.push_str(STRING_MARK);
            } else {
                out.push('$');
                i += 1;
            }
        } else if (mode == Mode::Sql || i == 0 || !is_ident_cont(b[i - 1]))
            && (c.is_ascii_digit() || (c == b'.' && i + 1 < b.len() && b[i + 1].is_ascii_digit()))
        {
            let end = skip_number(b, i);
            if mode == Mode::Sql {
                out.push_str(NUMBER_MARK);
            } else {
                out.push_str(&text[i..end]);
            }
            i = end;
        } else {
            // Any other byte, copied along with the rest of its UTF-8 sequence.
            let start = i;
            i += 1;
            while i < b.len() && (b[i] & 0xC0) == 0x80 {
                i += 1;
            }
            out.push_str(&text[start..i]);
        }
    }
    out
}

/// The end of a `'…'` literal starting at `start` (`''` is a quote; with `backslash`,
/// `\x` escapes any byte), or the end of the text when it is unterminated.
fn skip_quoted(b: &[u8], start: usize, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if backslash => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The end of a `"…"` identifier starting at `start` (`""` is a quote), or the end of
/// the text.
fn skip_double_quoted(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'"' if b.get(i + 1) == Some(&b'"') => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The end of a numeric literal: digits (and `_`), a fraction, an exponent, or a
/// `0x`/`0o`/`0b` integer.
fn skip_number(b: &[u8], start: usize) -> usize {
    let mut i = start;
    let digits = |i: &mut usize, ok: fn(u8) -> bool| {
        while *i < b.len() && (ok(b[*i]) || b[*i] == b'_') {
            *i += 1;
        }
    };
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')) {
        i += 2;
        digits(&mut i, |c| c.is_ascii_hexdigit());
        return i;
    }
    digits(&mut i, |c| c.is_ascii_digit());
    if i < b.len() && b[i] == b'.' {
        i += 1;
        digits(&mut i, |c| c.is_ascii_digit());
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        let mut j = i + 1;
        if j < b.len() && matches!(b[j], b'+' | b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            i = j;
            digits(&mut i, |c| c.is_ascii_digit());
        }
    }
    i
}

/// Whether the text before a double quote ends with a word of [`OBJECT_WORDS`] and a
/// single space (looks back a bounded number of bytes).
fn follows_object_word(before: &[u8]) -> bool {
    let Some(rest) = before.strip_suffix(b" ") else {
        return false;
    };
    // At most 17 bytes back: no listed word is longer than 16.
    let window = &rest[rest.len().saturating_sub(17)..];
    let start = window
        .iter()
        .rposition(|c| !c.is_ascii_alphabetic())
        .map_or(0, |p| p + 1);
    let whole = start > 0 || window.len() == rest.len();
    let word = &window[start..];
    whole
        && word.len() <= 16
        && OBJECT_WORDS
            .iter()
            .any(|w| w.as_bytes().eq_ignore_ascii_case(word))
}

/// Where the statement text embedded in a server message starts: after `statement: `,
/// or after `execute|parse|bind NAME: ` (optionally after `duration: N ms  `).
fn embedded_statement_start(text: &str) -> Option<usize> {
    let mut rest = text;
    let mut offset = 0;
    if let Some(r) = rest.strip_prefix("duration: ") {
        let ms = r.find(" ms")?;
        let after = &r[ms + 3..];
        let trimmed = after.trim_start_matches(' ');
        offset = text.len() - trimmed.len();
        rest = trimmed;
    }
    for lead in ["statement: ", "utility statement: "] {
        if rest.starts_with(lead) {
            return Some(offset + lead.len());
        }
    }
    for lead in ["execute ", "parse ", "bind "] {
        if let Some(r) = rest.strip_prefix(lead) {
            let colon = r.find(": ")?;
            return Some(offset + lead.len() + colon + 2);
        }
    }
    None
}

/// The first `create|alter` word, then `role|user|group`, then `password`, as the
/// verb and object to name in the replacement, in upper case.
fn password_verb_object(text: &str) -> Option<(&'static str, &'static str)> {
    let mut verb = None;
    let mut object = None;
    for word in words(text) {
        match (verb, object) {
            (None, _) => {
                verb = if word.eq_ignore_ascii_case("create") {
                    Some("CREATE")
                } else if word.eq_ignore_ascii_case("alter") {
                    Some("ALTER")
                } else {
                    None
                };
            }
            (Some(_), None) => {
                object = ["ROLE", "USER", "GROUP"]
                    .into_iter()
                    .find(|o| word.eq_ignore_ascii_case(o));
            }
            (Some(v), Some(o)) => {
                if word.eq_ignore_ascii_case("password") {
                    return Some((v, o));
                }
            }
        }
    }
    None
}

/// The ASCII-alphabetic words of `text`, splitting at every other byte (so `ALTER/**/ROLE`
/// and `ALTER\nROLE` read as two words).
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_numbers_are_replaced() {
        assert_eq!(
            redact("SELECT * FROM t1 WHERE a = 'x''y' AND b = 42 AND c > 1.5e-3 AND d = $1"),
            "SELECT * FROM t1 WHERE a = '?' AND b = ? AND c > ? AND d = $1"
        );
        assert_eq!(
            redact("select e'a\\'b', E'c' from x"),
            "select e'?', E'?' from x"
        );
        assert_eq!(
            redact("DO $$ BEGIN RAISE 'x'; END $$; SELECT $fn$secret$fn$, .5, 0x1F"),
            "DO '?'; SELECT '?', ?, ?"
        );
        assert_eq!(
            redact("SELECT \"Col 1\", t2.c3 FROM \"t\"\"q\""),
            "SELECT \"Col 1\", t2.c3 FROM \"t\"\"q\""
        );
        assert_eq!(redact("SELECT 1_000_000, -7"), "SELECT ?, -?");
        assert!(matches!(redact("SELECT a FROM b"), Cow::Borrowed(_)));
    }

    #[test]
    fn unterminated_literals_are_redacted_to_the_end() {
        assert_eq!(redact("SELECT 'abc"), "SELECT '?'");
        assert_eq!(redact("SELECT $q$abc$x$"), "SELECT '?'");
        assert_eq!(redact("SELECT E'abc\\'"), "SELECT E'?'");
        // `$` does not continue an identifier here, unlike PostgreSQL: over-redaction.
        assert_eq!(redact("SELECT a$$x$$"), "SELECT a'?'");
    }

    #[test]
    fn messages_keep_numbers_and_object_names() {
        assert_eq!(
            redact_message("invalid input syntax for type integer: \"canary\""),
            "invalid input syntax for type integer: \"?\""
        );
        assert_eq!(
            redact_message("relation \"t1\" does not exist"),
            "relation \"t1\" does not exist"
        );
        assert_eq!(
            redact_message("password authentication failed for user \"bob\""),
            "password authentication failed for user \"bob\""
        );
        assert_eq!(
            redact_message(
                "process 123 still waiting for ShareLock on transaction 456 after 1000.5 ms"
            ),
            "process 123 still waiting for ShareLock on transaction 456 after 1000.5 ms"
        );
        assert_eq!(
            redact_message("duration: 12.5 ms  statement: SELECT 'x', 3"),
            "duration: 12.5 ms  statement: SELECT '?', ?"
        );
        assert_eq!(
            redact_message("duration: 1.0 ms  execute <unnamed>: SELECT 7 WHERE a = $1"),
            "duration: 1.0 ms  execute <unnamed>: SELECT ? WHERE a = $1"
        );
        assert_eq!(
            redact_message("statement: INSERT INTO t VALUES ('a')"),
            "statement: INSERT INTO t VALUES ('?')"
        );
    }

    #[test]
    fn password_statements_are_recognized() {
        for text in [
            "ALTER ROLE x PASSWORD 'p'",
            "create user y with encrypted password 'p'",
            "CREATE\n  ROLE\tz LOGIN\n PASSWORD 'p'",
            "alter/**/user \"Q\" password 'SCRAM-SHA-256$4096:abc'",
            "statement: ALTER USER x PASSWORD 'md5abc'",
            "ALTER GROUP g PASSWORD NULL",
        ] {
            assert!(contains_password(text), "{text}");
        }
        for text in [
            "password authentication failed for user \"x\"",
            "ALTER TABLE password ADD COLUMN x int",
            "SELECT password FROM users",
            "ALTER ROLE x CONNECTION LIMIT 3",
        ] {
            assert!(!contains_password(text), "{text}");
        }
        assert_eq!(
            password_statement("create user y with encrypted password 'secret'").as_deref(),
            Some("CREATE USER … PASSWORD <redacted>")
        );
    }

    #[test]
    fn entries_lose_the_password_in_every_field() {
        let mut e = LogEntry {
            message: "syntax error at or near \"secret\"".into(),
            statement: Some("ALTER ROLE x PASSWORD secret".into()),
            detail: Some("secret".into()),
            ..LogEntry::default()
        };
        redact_entry(&mut e, false);
        assert_eq!(e.message, "syntax error at or near \"?\"");
        assert_eq!(
            e.statement.as_deref(),
            Some("ALTER ROLE … PASSWORD <redacted>")
        );
        assert_eq!(e.detail, None);

        let mut e = LogEntry {
            message: "statement: alter role x password 'secret'".into(),
            ..LogEntry::default()
        };
        redact_entry(&mut e, false);
        assert_eq!(e.message, "ALTER ROLE … PASSWORD <redacted>");

        let mut e = LogEntry {
            message: "value \"4111\" is out of range".into(),
            statement: Some("SELECT '4111'::int2".into()),
            ..LogEntry::default()
        };
        let kept = e.clone();
        redact_entry(&mut e, false);
        assert_eq!(
            e, kept,
            "literal redaction off leaves non-password text alone"
        );
        redact_entry(&mut e, true);
        assert_eq!(e.message, "value \"?\" is out of range");
        assert_eq!(e.statement.as_deref(), Some("SELECT '?'::int2"));
    }

    #[test]
    fn odd_bytes_do_not_panic() {
        for text in [
            "", "'", "$", "$$", "E", "e'", "\"", "0x", "1e", ".", "é'ü'", "$a", "€1",
        ] {
            drop(redact(text));
            drop(redact_message(text));
            contains_password(text);
        }
        assert_eq!(redact("é'ü' 1"), "é'?' ?");
    }
}
