//! Transcripts: what clients send and the exact bytes the server answers,
//! one scenario per file, played against a server at an address.
//!
//! # Format
//!
//! One step per line; blank lines and lines starting with `#` are comments
//! (the first comment lines say what the scenario shows).
//!
//! ```text
//! % server -z 10          arguments added to the server's command line
//! % persist               give the server a `-b` dir (kept across `restart`)
//! % not-reference WHY     not played against the reference (say why)
//! c1> put 0 0 60 5\r\n    connection c1 sends (connections open on first use;
//! c1> hello\r\n           a bare `>` or `<` means connection `c`)
//! c1< INSERTED {id:a}\r\n c1 must receive exactly these bytes next
//! c1 silent 300ms         c1 receives nothing for 300 ms
//! c1 closed               the server closes c1 (nothing more arrives first)
//! c1 close                the client closes c1
//! c1 shutdown             the client half-closes c1 (no more sending)
//! sleep 1100ms            wait
//! restart                 SIGTERM the server, start it again (same `-b`)
//! signal USR1             send the server a signal by its PID
//! ```
//!
//! After `>` or `<` one space is skipped; the rest of the line is the
//! data, with no line end added. Escapes: `\r`, `\n`, `\t`, `\0`, `\\`,
//! `\{`, `\xHH`. Placeholders:
//!
//! - `{id:NAME}`: a job id. Its first appearance in an expected reply binds
//!   NAME; later ones (and every one in sent data) must equal it.
//! - `{int}`, `{int:LO..HI}`: any decimal integer, or one within LO..=HI.
//! - `{bytes}`: an integer that must equal the size of the data block
//!   after the line (checked when the transcript ends).
//! - `{line}`: any bytes up to the next `\r` or `\n`.
//! - `{rep N TEXT}`: TEXT repeated N times (sent or expected).
//!
//! Every expectation waits at most [`STEP_WAIT`]; when the transcript
//! ends, each open connection must stay silent for [`TAIL_SILENCE`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::server::{Options, Server, ServerCmd};
use super::wire::Conn;

/// The longest an expectation waits for its bytes.
pub const STEP_WAIT: Duration = Duration::from_secs(5);
/// How long every connection must stay quiet at the end.
pub const TAIL_SILENCE: Duration = Duration::from_millis(30);
/// The longest `sleep` or `silent` a transcript may ask for.
const WAIT_MAX: Duration = Duration::from_secs(5);
/// The most steps a transcript may have.
const STEPS_MAX: usize = 500;

/// A piece of expected (or sent) data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// These bytes exactly.
    Lit(Vec<u8>),
    /// A job id bound to a name.
    Id(String),
    /// Any integer, or one in a range.
    Int(Option<(u64, u64)>),
    /// The size of the following data block.
    Bytes,
    /// Anything up to the end of the line.
    Line,
}

/// One step of a transcript.
#[derive(Debug, Clone)]
pub enum Step {
    /// A connection sends.
    Send(String, Vec<Token>),
    /// A connection must receive.
    Expect(String, Vec<Token>),
    /// A connection receives nothing for a while.
    Silent(String, Duration),
    /// The server closes the connection.
    Closed(String),
    /// The client closes the connection.
    Close(String),
    /// The client half-closes the connection.
    Shutdown(String),
    /// Wait.
    Sleep(Duration),
    /// Restart the server.
    Restart,
    /// Signal the server.
    Signal(i32),
}

/// A parsed transcript.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// The file's stem.
    pub name: String,
    /// Its steps, with their line numbers.
    pub steps: Vec<(usize, Step)>,
    /// How to start the server.
    pub options: Options,
    /// Why the reference cannot be held to it (`% not-reference WHY`):
    /// such a transcript describes beaver only.
    pub not_reference: Option<String>,
}

/// Parses `text` (the file `name`).
pub fn parse(name: &str, text: &str) -> Result<Transcript, String> {
    let mut t = Transcript {
        name: name.to_owned(),
        steps: Vec::new(),
        options: Options::default(),
        not_reference: None,
    };
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let at = |e: String| format!("{name}:{no}: {e}");
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(directive) = line.strip_prefix('%') {
            let mut words = directive.split_whitespace();
            match words.next() {
                Some("persist") => t.options.persist = true,
                Some("server") => t.options.args.extend(words.map(str::to_owned)),
                Some("not-reference") => {
                    let why = words.collect::<Vec<_>>().join(" ");
                    if why.is_empty() {
                        return Err(at("`% not-reference` needs a reason".into()));
                    }
                    t.not_reference = Some(why);
                }
                other => return Err(at(format!("unknown directive {other:?}"))),
            }
            continue;
        }
        let step = parse_step(line).map_err(at)?;
        t.steps.push((no, step));
        if t.steps.len() > STEPS_MAX {
            return Err(at(format!("more than {STEPS_MAX} steps")));
        }
    }
    Ok(t)
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    let ms: u64 = s
        .strip_suffix("ms")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("expected a duration like 300ms, got {s:?}"))?;
    let d = Duration::from_millis(ms);
    if d > WAIT_MAX {
        return Err(format!("{s} is longer than {WAIT_MAX:?}"));
    }
    Ok(d)
}

fn parse_step(line: &str) -> Result<Step, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["sleep", d] => return Ok(Step::Sleep(parse_wait(d)?)),
        ["restart"] => return Ok(Step::Restart),
        ["signal", "USR1"] => return Ok(Step::Signal(libc::SIGUSR1)),
        ["signal", other] => return Err(format!("unsupported signal {other}")),
        _ => {}
    }
    let conn_len = line
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        .count();
    let (conn, rest) = line.split_at(conn_len);
    let conn = if conn.is_empty() { "c" } else { conn }.to_owned();
    if let Some(data) = rest.strip_prefix('>') {
        let tokens = parse_data(data.strip_prefix(' ').unwrap_or(data))?;
        if tokens
            .iter()
            .any(|t| !matches!(t, Token::Lit(_) | Token::Id(_)))
        {
            return Err("sent data may only hold literal bytes and {id:NAME}".into());
        }
        return Ok(Step::Send(conn, tokens));
    }
    if let Some(data) = rest.strip_prefix('<') {
        return Ok(Step::Expect(
            conn,
            parse_data(data.strip_prefix(' ').unwrap_or(data))?,
        ));
    }
    match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["silent", d] => Ok(Step::Silent(conn, parse_wait(d)?)),
        ["closed"] => Ok(Step::Closed(conn)),
        ["close"] => Ok(Step::Close(conn)),
        ["shutdown"] => Ok(Step::Shutdown(conn)),
        _ => Err(format!("cannot read step {line:?}")),
    }
}

/// Reads escapes and placeholders.
pub fn parse_data(s: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut lit = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, e) = chars.next().ok_or("a lone \\ at the end")?;
                match e {
                    'r' => lit.push(b'\r'),
                    'n' => lit.push(b'\n'),
                    't' => lit.push(b'\t'),
                    '0' => lit.push(0),
                    '\\' => lit.push(b'\\'),
                    '{' => lit.push(b'{'),
                    'x' => {
                        let hex: String = (0..2)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        let b =
                            u8::from_str_radix(&hex, 16).map_err(|_| format!("bad \\x{hex}"))?;
                        lit.push(b);
                    }
                    other => return Err(format!("unknown escape \\{other}")),
                }
            }
            '{' => {
                let end = s[i..].find('}').ok_or("a { without }")? + i;
                let inner = &s[i + 1..end];
                while chars.peek().is_some_and(|&(j, _)| j <= end) {
                    chars.next();
                }
                match placeholder(inner)? {
                    Token::Lit(bytes) => lit.extend(bytes),
                    token => {
                        if !lit.is_empty() {
                            tokens.push(Token::Lit(std::mem::take(&mut lit)));
                        }
                        tokens.push(token);
                    }
                }
            }
            c => {
                let mut buf = [0u8; 4];
                lit.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if !lit.is_empty() {
        tokens.push(Token::Lit(lit));
    }
    Ok(tokens)
}

fn placeholder(inner: &str) -> Result<Token, String> {
    if let Some(name) = inner.strip_prefix("id:") {
        return Ok(Token::Id(name.to_owned()));
    }
    if let Some(rep) = inner.strip_prefix("rep ") {
        let (n, text) = rep.split_once(' ').ok_or("{rep N TEXT}")?;
        let n: usize = n.parse().map_err(|_| format!("bad count in {{{inner}}}"))?;
        if n > 100_000 {
            return Err("a {rep} longer than 100,000".into());
        }
        return Ok(Token::Lit(text.repeat(n).into_bytes()));
    }
    if let Some(range) = inner.strip_prefix("int:") {
        let (lo, hi) = range.split_once("..").ok_or("{int:LO..HI}")?;
        let lo = lo
            .parse()
            .map_err(|_| format!("bad bound in {{{inner}}}"))?;
        let hi = hi
            .parse()
            .map_err(|_| format!("bad bound in {{{inner}}}"))?;
        return Ok(Token::Int(Some((lo, hi))));
    }
    match inner {
        "int" => Ok(Token::Int(None)),
        "bytes" => Ok(Token::Bytes),
        "line" => Ok(Token::Line),
        _ => Err(format!("unknown placeholder {{{inner}}}")),
    }
}

/// Bytes for a message: printable ASCII as is, the rest escaped.
pub fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(600) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > 600 {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

/// The state of one run.
struct Run<'a> {
    server: &'a mut Server,
    conns: BTreeMap<String, Conn>,
    ids: HashMap<String, u64>,
    /// `{bytes}` claims: connection, offset of the number, its value.
    sizes: Vec<(String, usize, u64)>,
}

/// Plays `t` against a fresh server started from `cmd`.
pub fn run(t: &Transcript, cmd: &ServerCmd) -> Result<(), String> {
    let mut server = Server::start(cmd, t.options.clone());
    let mut run = Run {
        server: &mut server,
        conns: BTreeMap::new(),
        ids: HashMap::new(),
        sizes: Vec::new(),
    };
    let result = run.play(t);
    result.map_err(|e| {
        let received: String = run
            .conns
            .iter()
            .map(|(n, c)| format!("\n  {n} received: {}", show(&c.received)))
            .collect();
        format!(
            "{}: {e}{received}\n  server log: {}",
            t.name,
            server.log().trim()
        )
    })
}

impl Run<'_> {
    fn play(&mut self, t: &Transcript) -> Result<(), String> {
        for (no, step) in &t.steps {
            self.step(step).map_err(|e| format!("line {no}: {e}"))?;
        }
        let deadline = Instant::now() + TAIL_SILENCE;
        for (name, conn) in &mut self.conns {
            while conn.fill(deadline)? {}
            if !conn.pending().is_empty() {
                return Err(format!(
                    "{name} got more than expected: {}",
                    show(conn.pending())
                ));
            }
        }
        self.check_sizes(None)
    }

    fn conn(&mut self, name: &str) -> Result<&mut Conn, String> {
        if !self.conns.contains_key(name) {
            let conn = Conn::connect(self.server.addr)?;
            self.conns.insert(name.to_owned(), conn);
        }
        self.conns
            .get_mut(name)
            .ok_or_else(|| "no connection".into())
    }

    fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Send(name, tokens) => {
                let bytes = self.render(tokens)?;
                self.conn(name)?.send(&bytes)
            }
            Step::Expect(name, tokens) => self.expect(name, tokens),
            Step::Silent(name, d) => {
                let conn = self.conn(name)?;
                let deadline = Instant::now() + *d;
                while Instant::now() < deadline {
                    conn.fill(deadline)?;
                    if !conn.pending().is_empty() || conn.eof {
                        return Err(format!(
                            "{name} was to stay silent, got {} (closed: {})",
                            show(conn.pending()),
                            conn.eof
                        ));
                    }
                }
                Ok(())
            }
            Step::Closed(name) => {
                let conn = self.conn(name)?;
                let deadline = Instant::now() + STEP_WAIT;
                while !conn.eof && Instant::now() < deadline {
                    conn.fill(deadline)?;
                }
                if !conn.eof || !conn.pending().is_empty() {
                    return Err(format!(
                        "{name} was to be closed; closed: {}, got {}",
                        conn.eof,
                        show(conn.pending())
                    ));
                }
                self.check_sizes(Some(name))?;
                self.conns.remove(name);
                Ok(())
            }
            Step::Close(name) => {
                self.check_sizes(Some(name))?;
                self.conns.remove(name);
                Ok(())
            }
            Step::Shutdown(name) => self.conn(name)?.shutdown_write(),
            Step::Sleep(d) => {
                std::thread::sleep(*d);
                Ok(())
            }
            Step::Restart => {
                self.check_sizes(None)?;
                self.conns.clear();
                self.server.restart();
                Ok(())
            }
            Step::Signal(sig) => {
                self.server.signal(*sig);
                // Let the server handle it before the next step.
                std::thread::sleep(Duration::from_millis(50));
                Ok(())
            }
        }
    }

    fn render(&self, tokens: &[Token]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for t in tokens {
            match t {
                Token::Lit(b) => out.extend_from_slice(b),
                Token::Id(name) => {
                    let id = self
                        .ids
                        .get(name)
                        .ok_or_else(|| format!("{{id:{name}}} is not bound yet"))?;
                    out.extend_from_slice(id.to_string().as_bytes());
                }
                other => return Err(format!("{other:?} cannot be sent")),
            }
        }
        Ok(out)
    }

    fn expect(&mut self, name: &str, tokens: &[Token]) -> Result<(), String> {
        let deadline = Instant::now() + STEP_WAIT;
        for token in tokens {
            let conn = self.conn(name)?;
            let fail = |conn: &Conn, what: String| {
                Err(format!(
                    "{name} expected {what}, got {} (closed: {})",
                    show(conn.pending()),
                    conn.eof
                ))
            };
            match token {
                Token::Lit(bytes) => {
                    conn.want(bytes.len(), deadline)?;
                    if !conn.pending().starts_with(bytes) {
                        return fail(conn, show(bytes));
                    }
                    conn.consumed += bytes.len();
                }
                Token::Line => {
                    let n = wait_for(conn, deadline, |p| {
                        p.iter().position(|&b| b == b'\r' || b == b'\n')
                    })?;
                    let Some(n) = n else {
                        return fail(conn, "a line".into());
                    };
                    conn.consumed += n;
                }
                Token::Int(_) | Token::Id(_) | Token::Bytes => {
                    let n = wait_for(conn, deadline, |p| {
                        p.iter().position(|b| !b.is_ascii_digit())
                    })?;
                    let value = n.filter(|&n| n > 0).and_then(|n| {
                        std::str::from_utf8(&conn.pending()[..n])
                            .ok()?
                            .parse::<u64>()
                            .ok()
                    });
                    let (Some(n), Some(value)) = (n, value) else {
                        return fail(conn, format!("{token:?}"));
                    };
                    let at = conn.consumed;
                    conn.consumed += n;
                    self.check_number(name, token, value, at)?;
                }
            }
        }
        Ok(())
    }

    fn check_number(
        &mut self,
        conn: &str,
        token: &Token,
        value: u64,
        at: usize,
    ) -> Result<(), String> {
        match token {
            Token::Int(Some((lo, hi))) if !(lo..=hi).contains(&&value) => {
                Err(format!("{conn}: {value} is not within {lo}..={hi}"))
            }
            Token::Id(name) => match self.ids.get(name) {
                Some(&bound) if bound != value => {
                    Err(format!("{conn}: {{id:{name}}} is {bound}, got {value}"))
                }
                _ => {
                    self.ids.insert(name.clone(), value);
                    Ok(())
                }
            },
            Token::Bytes => {
                self.sizes.push((conn.to_owned(), at, value));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Each `{bytes}` of connection `only` (or of all) equals the size of
    /// the data block after its line; checked claims are dropped.
    fn check_sizes(&mut self, only: Option<&str>) -> Result<(), String> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sizes)
            .into_iter()
            .partition(|(name, _, _)| only.is_none_or(|o| o == name));
        self.sizes = rest;
        for (name, at, n) in mine {
            let received = self.conns.get(&name).map_or(&[][..], |c| &c.received[..]);
            let after = &received[at..];
            let Some(eol) = after.windows(2).position(|w| w == b"\r\n") else {
                return Err(format!("{name}: no line end after {{bytes}}"));
            };
            let start = at + eol + 2;
            let end = start + n as usize;
            if received.get(end..end + 2) != Some(&b"\r\n"[..]) {
                return Err(format!(
                    "{name}: the data after {{bytes}} = {n} is not {n} bytes and CRLF"
                ));
            }
        }
        Ok(())
    }
}

/// Waits until `found` finds a position in the unconsumed bytes; `None`
/// when the server closes or the deadline passes first.
fn wait_for(
    conn: &mut Conn,
    deadline: Instant,
    found: impl Fn(&[u8]) -> Option<usize>,
) -> Result<Option<usize>, String> {
    loop {
        if let Some(n) = found(conn.pending()) {
            return Ok(Some(n));
        }
        if conn.eof || Instant::now() >= deadline {
            return Ok(None);
        }
        conn.fill(deadline)?;
    }
}
