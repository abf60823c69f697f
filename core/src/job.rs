//! What a job is: its identity, its queue, its payload and its lifecycle state.

use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// The first character of ids the core assigned before ids were plain
/// numbers, and of the ones it still assigns when a number is taken (see
/// [`JobId::assigned`]). Clients may not submit ids that start with it.
pub const ASSIGNED_ID_PREFIX: char = '~';

/// The longest job id accepted, in bytes.
pub const JOB_ID_BYTES_MAX: usize = 128;

/// The longest queue name accepted, in bytes.
pub const QUEUE_NAME_BYTES_MAX: usize = 64;

/// The queue a job goes to when the client names none.
pub const DEFAULT_QUEUE: &str = "default";

/// A job's identity: a client-given string, or one the core assigned.
///
/// Guarantees: 1 to [`JOB_ID_BYTES_MAX`] bytes of printable ASCII without
/// spaces or the URL-special characters `/ ? # %`, so it is safe in a URL
/// path and a log line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JobId(Box<str>);

impl JobId {
    /// Validates an id a client submitted: ids of digits only are the
    /// job numbers beaver assigns, and the `~` prefix is reserved.
    pub fn from_client(id: &str) -> Result<JobId, String> {
        if id.starts_with(ASSIGNED_ID_PREFIX) {
            return Err(format!(
                "ids starting with '{ASSIGNED_ID_PREFIX}' are reserved for ids beaver assigns; choose another id"
            ));
        }
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "ids of digits only are beaver's own job numbers; choose an id with another character (e.g. \"job-{id}\"), or leave the id out to get a number"
            ));
        }
        JobId::parse(id)
    }

    /// Validates any id, including assigned ones (used when reading records
    /// and when looking a job up).
    pub fn parse(id: &str) -> Result<JobId, String> {
        if id.is_empty() {
            return Err("the id is empty; give a non-empty id or leave it out".into());
        }
        if id.len() > JOB_ID_BYTES_MAX {
            return Err(format!(
                "the id is {} bytes long; the limit is {JOB_ID_BYTES_MAX}",
                id.len()
            ));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '/' | '?' | '#' | '%'))
        {
            return Err(format!(
                "the id contains {bad:?}; ids are printable ASCII without spaces or / ? # %"
            ));
        }
        Ok(JobId(id.into()))
    }

    /// The id the core assigns to the job with sequence number `seq`: the
    /// number itself in decimal (`5`), or `~5` when `taken` (an id a client
    /// gave before ids of digits only were refused holds that number).
    pub fn assigned(seq: u64, taken: bool) -> JobId {
        match taken {
            false => JobId(seq.to_string().into()),
            true => JobId(format!("{ASSIGNED_ID_PREFIX}{seq}").into()),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the id has a form clients may not submit (digits only, or
    /// the `~` prefix): beaver assigned it, or a client gave it before ids
    /// of digits only were refused.
    pub fn is_assigned(&self) -> bool {
        self.0.starts_with(ASSIGNED_ID_PREFIX) || self.0.bytes().all(|b| b.is_ascii_digit())
    }

    /// The number an id of digits only spells, in canonical decimal (no
    /// leading zero, within `u64`); `None` for any other id.
    pub fn number(&self) -> Option<u64> {
        canonical_number(&self.0)
    }

    /// The sequence number an assigned id names: `5` for both `5` and
    /// `~5`; `None` if the id has neither form.
    pub fn assigned_number(&self) -> Option<u64> {
        canonical_number(self.0.strip_prefix(ASSIGNED_ID_PREFIX).unwrap_or(&self.0))
    }
}

/// The number `text` spells in canonical decimal (digits only, no leading
/// zero, within `u64`).
pub(crate) fn canonical_number(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseStr("a job id", JobId::parse))
    }
}

/// Deserializes a string through a validating parser, borrowing the input
/// where the format allows (no intermediate `String`).
struct ParseStr<T>(&'static str, fn(&str) -> Result<T, String>);

impl<T> serde::de::Visitor<'_> for ParseStr<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.1)(v).map_err(E::custom)
    }
}

/// The name of a queue.
///
/// Guarantees: 1 to [`QUEUE_NAME_BYTES_MAX`] bytes of `[A-Za-z0-9._-]`.
/// Compares, orders and hashes as its text.
#[derive(Clone)]
pub struct QueueName(Name);

/// The default queue's name costs nothing to make, clone or drop (no
/// shared reference count for a million jobs' names to contend on);
/// `Named` never holds the default name.
#[derive(Clone)]
enum Name {
    Default,
    Named(std::sync::Arc<str>),
}

impl PartialEq for QueueName {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Name::Default, Name::Default) => true,
            (Name::Named(a), Name::Named(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for QueueName {}

impl PartialOrd for QueueName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for QueueName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for QueueName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl std::fmt::Debug for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QueueName({:?})", self.as_str())
    }
}

impl Serialize for QueueName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl QueueName {
    /// Validates a queue name.
    pub fn parse(name: &str) -> Result<QueueName, String> {
        if name == DEFAULT_QUEUE {
            // Decoding a log of a million default-queue jobs then allocates
            // no name at all.
            return Ok(QueueName::default_queue());
        }
        if name.is_empty() || name.len() > QUEUE_NAME_BYTES_MAX {
            return Err(format!(
                "a queue name is 1 to {QUEUE_NAME_BYTES_MAX} bytes; this one is {}",
                name.len()
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "the queue name contains {bad:?}; use letters, digits, '.', '_' or '-'"
            ));
        }
        Ok(QueueName(Name::Named(name.into())))
    }

    /// The queue jobs go to when none is named.
    pub fn default_queue() -> QueueName {
        QueueName(Name::Default)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Default => DEFAULT_QUEUE,
            Name::Named(n) => n,
        }
    }
}

impl Default for QueueName {
    fn default() -> Self {
        QueueName::default_queue()
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for QueueName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseStr("a queue name", QueueName::parse))
    }
}

/// A job's payload: one JSON value, validated, kept as its raw bytes.
///
/// Guarantees: the bytes are one syntactically valid JSON value (checked
/// without building a tree), held in a single allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Payload(Box<[u8]>);

impl Payload {
    /// Validates `bytes` as one JSON value.
    pub fn from_json(bytes: &[u8]) -> Result<Payload, String> {
        match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Ok(Payload(bytes.into())),
            Err(e) => Err(format!("the payload is not valid JSON: {e}")),
        }
    }

    /// `value` written as JSON: valid by construction, so not parsed again
    /// (a beanstalkd body becomes a JSON string this way). `Err` only when
    /// `value` cannot be written as JSON (a map with keys that are not
    /// strings, a failing `Serialize`).
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Payload, String> {
        serde_json::to_vec(value)
            .map(|json| Payload(json.into_boxed_slice()))
            .map_err(|e| format!("the payload cannot be written as JSON: {e}"))
    }

    /// `text` as a JSON string: the same bytes as [`Payload::from_value`]
    /// writes, without escaping byte by byte when nothing needs it (no
    /// quote, backslash or control character: a put's usual body).
    pub fn from_text(text: &str) -> Result<Payload, String> {
        // A fold without an early exit, so that it runs many bytes a step.
        let escaped = |b: u8| u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\');
        if text.bytes().fold(0, |any, b| any | escaped(b)) != 0 {
            return Payload::from_value(text);
        }
        let mut json = Vec::with_capacity(text.len() + 2);
        json.push(b'"');
        json.extend_from_slice(text.as_bytes());
        json.push(b'"');
        Ok(Payload(json.into_boxed_slice()))
    }

    /// The JSON bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the payload has no bytes (never true for a validated payload).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if s.len() <= 64 => write!(f, "Payload({s})"),
            _ => write!(f, "Payload({} bytes)", self.0.len()),
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON payload bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                // Records passed their checksum, so the bytes were validated
                // when they were enqueued; trusting them keeps replay fast.
                Ok(Payload(v.into()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(v.into_boxed_slice()))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// What a client asks to enqueue. Fields left `None` take the configured
/// defaults when the core accepts the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The client's id; `None` lets the core assign one.
    pub id: Option<JobId>,
    /// The queue; the default queue when `None`.
    pub queue: Option<QueueName>,
    /// The payload handed to the executor.
    pub payload: Payload,
    /// Higher runs first among ready jobs of one queue.
    pub priority: i32,
    /// How many attempts before the job is dead.
    pub max_attempts: Option<u32>,
    /// How long one attempt may run.
    pub timeout_ms: Option<u64>,
    /// How long to wait before the first attempt.
    pub delay_ms: u64,
}

impl JobSpec {
    /// A spec with only a payload: default id, queue, priority and limits.
    pub fn new(payload: Payload) -> JobSpec {
        JobSpec {
            id: None,
            queue: None,
            payload,
            priority: 0,
            max_attempts: None,
            timeout_ms: None,
            delay_ms: 0,
        }
    }

    /// The same spec with a client id.
    pub fn with_id(mut self, id: JobId) -> JobSpec {
        self.id = Some(id);
        self
    }
}

/// A job as it is written in an enqueue record: every default resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    /// The id (client-given or assigned), new to the core.
    pub id: JobId,
    /// The named queue the job waits in (the default one if the client
    /// named none).
    pub queue: QueueName,
    /// The payload handed to every attempt.
    pub payload: Payload,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts before dead (at least 1).
    pub max_attempts: u32,
    /// Limit on one attempt's run time.
    pub timeout_ms: u64,
    /// Not run before this time.
    pub run_at: UnixMillis,
}

/// The attempts of a job that is never given up (beanstalkd's jobs): as
/// many as a `u32` holds, more than any deployment makes at one attempt a
/// second. Such a job ends only by a client's delete or bury, so the disk
/// reserve counts one more attempt for it, not all of them (see
/// [`crate::Core::drain`]). The core takes it whatever `attempts_max`
/// says; the HTTP API does not offer it.
pub const UNLIMITED_ATTEMPTS: u32 = u32::MAX;

/// beaver's priority (`i32`, higher first) of beanstalkd's priority `pri`
/// (`u32`, lower first): `i32::MAX - pri`. A bijection, so every
/// beanstalkd priority survives the round trip and their order is kept.
pub fn priority_from_beanstalk(pri: u32) -> i32 {
    // In i64 the difference cannot overflow and always fits an i32:
    // i32::MAX - u32::MAX = i32::MIN.
    (i64::from(i32::MAX) - i64::from(pri)) as i32
}

/// beanstalkd's priority of beaver's priority `priority`: the inverse of
/// [`priority_from_beanstalk`] (`i32::MAX - priority`, always in `u32`).
pub fn priority_to_beanstalk(priority: i32) -> u32 {
    (i64::from(i32::MAX) - i64::from(priority)) as u32
}

/// The lifecycle state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to run: ready now, or scheduled for `run_at`.
    Pending,
    /// Leased to a worker until its deadline.
    InFlight,
    /// Finished successfully. Final.
    Completed,
    /// Ran out of attempts. Final unless requeued.
    Dead,
    /// Cancelled while pending. Final.
    Cancelled,
}

impl JobState {
    /// Whether the state is final (completed, dead or cancelled).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Dead | JobState::Cancelled
        )
    }

    /// The state's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::InFlight => "in_flight",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A read-only copy of one job's durable state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    /// The job's id: unique among the jobs the core holds and the ids it
    /// remembers.
    pub id: JobId,
    /// The named queue the job waits in.
    pub queue: QueueName,
    /// The job's durable state (never one whose record is not durable).
    pub state: JobState,
    /// The payload; `None` once completed or cancelled (nothing will run
    /// the job again, so its memory is released).
    pub payload: Option<Payload>,
    /// Priority (higher first).
    pub priority: i32,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Limit on one attempt.
    pub timeout_ms: u64,
    /// When the job was accepted.
    pub created_at: UnixMillis,
    /// When it may next run (pending), meaningful only while pending.
    pub run_at: UnixMillis,
    /// The lease deadline while in flight and running (`None` while the
    /// attempt waits for a worker).
    pub lease_until: Option<UnixMillis>,
    /// When it reached a final state.
    pub finished_at: Option<UnixMillis>,
    /// The error of the latest failed attempt.
    pub last_error: Option<String>,
    /// Order of acceptance (FIFO key), dense from 1.
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_debugs_as_its_text_up_to_64_bytes_else_as_its_length() {
        let short = Payload::from_json(br#"{"to":"ada"}"#).expect("json");
        assert_eq!(format!("{short:?}"), r#"Payload({"to":"ada"})"#);
        let long = Payload::from_text(&"x".repeat(70)).expect("a string");
        assert_eq!(format!("{long:?}"), "Payload(72 bytes)");
    }

    /// A value of the wrong kind is refused naming what was expected, and
    /// a string the parser refuses carries the parser's reason.
    #[test]
    fn an_id_or_a_queue_of_the_wrong_kind_says_what_was_expected() {
        use serde::de::IntoDeserializer;
        use serde::de::value::Error;
        let number = || 5u64.into_deserializer();
        let e = JobId::deserialize::<serde::de::value::U64Deserializer<Error>>(number());
        assert!(e.unwrap_err().to_string().ends_with("expected a job id"));
        let e = QueueName::deserialize::<serde::de::value::U64Deserializer<Error>>(number());
        assert!(
            e.unwrap_err()
                .to_string()
                .ends_with("expected a queue name")
        );
        let bad: serde::de::value::StrDeserializer<'_, Error> = "a b".into_deserializer();
        let e = QueueName::deserialize(bad).unwrap_err().to_string();
        assert_eq!(Err(e), QueueName::parse("a b").map(|_| ()));
    }

    proptest::proptest! {
        /// What `from_value` writes is what `from_json` accepts, byte for
        /// byte: the shortcut skips a check that could never fail.
        #[test]
        fn a_payload_from_a_value_is_valid_json(text in proptest::prop_oneof![proptest::prelude::any::<String>(), "[a\"\\\\\\x00-\\x1f\\x7fé]{0,24}"], bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..16)) {
            proptest::prop_assert_eq!(Payload::from_text(&text), Payload::from_value(&text));
            let from_text = Payload::from_value(&text).expect("a string is JSON");
            proptest::prop_assert_eq!(Payload::from_json(from_text.as_bytes()), Ok(from_text.clone()));
            let from_list = Payload::from_value(&bytes).expect("a list is JSON");
            proptest::prop_assert_eq!(Payload::from_json(from_list.as_bytes()), Ok(from_list.clone()));
        }
    }

    /// Read from a format that says what it holds, a payload of another
    /// shape is refused naming what was expected.
    #[test]
    fn a_payload_of_another_shape_is_refused_naming_payload_bytes() {
        let e = serde_json::from_str::<Payload>("true").unwrap_err();
        assert!(e.to_string().contains("expected JSON payload bytes"), "{e}");
    }

    #[test]
    fn a_validated_payload_is_never_empty() {
        for json in ["1", "\"\"", "[]", "null"] {
            let p = Payload::from_json(json.as_bytes()).unwrap();
            assert!(!p.is_empty(), "{json}");
            assert_eq!(p.len(), json.len());
        }
    }

    #[test]
    fn beanstalk_priorities_map_onto_beaver_priorities_exactly() {
        assert_eq!(priority_from_beanstalk(0), i32::MAX);
        assert_eq!(priority_from_beanstalk(u32::MAX), i32::MIN);
        assert_eq!(priority_from_beanstalk(1024), i32::MAX - 1024);
        for pri in [0, 1, 1023, 1024, 1 << 31, u32::MAX - 1, u32::MAX] {
            assert_eq!(priority_to_beanstalk(priority_from_beanstalk(pri)), pri);
            if pri < u32::MAX {
                // Lower first there is higher first here.
                assert!(priority_from_beanstalk(pri) > priority_from_beanstalk(pri + 1));
            }
        }
        for p in [i32::MIN, -1, 0, 1, i32::MAX] {
            assert_eq!(priority_from_beanstalk(priority_to_beanstalk(p)), p);
        }
    }

    #[test]
    fn client_ids_are_validated() {
        assert!(JobId::from_client("order-17:email").is_ok());
        assert!(JobId::from_client("").unwrap_err().contains("empty"));
        assert!(JobId::from_client("~1").unwrap_err().contains("reserved"));
        assert!(JobId::from_client("a b").unwrap_err().contains("' '"));
        assert!(JobId::from_client("a/b").unwrap_err().contains("'/'"));
        assert!(JobId::from_client(&"x".repeat(JOB_ID_BYTES_MAX)).is_ok());
        assert!(
            JobId::from_client(&"x".repeat(129))
                .unwrap_err()
                .contains("129")
        );
        assert!(JobId::parse("~42").is_ok());
    }

    #[test]
    fn a_client_id_of_digits_only_is_refused_as_a_job_number() {
        for digits in ["5", "007", "18446744073709551616"] {
            let e = JobId::from_client(digits).unwrap_err();
            assert!(
                e.contains("digits only are beaver's own job numbers"),
                "{e}"
            );
        }
        assert!(JobId::from_client("5a").is_ok());
        assert!(JobId::parse("5").is_ok(), "records and lookups read them");
    }

    #[test]
    fn assigned_ids_are_numbers_or_carry_the_prefix_when_taken() {
        assert_eq!(JobId::assigned(42, false).as_str(), "42");
        assert_eq!(JobId::assigned(42, true).as_str(), "~42");
        for (id, number, assigned) in [
            ("42", Some(42), Some(42)),
            ("~42", None, Some(42)),
            ("042", None, None),
            ("~042", None, None),
            ("0", Some(0), Some(0)),
            ("18446744073709551616", None, None),
            ("mail", None, None),
        ] {
            let id = JobId::parse(id).unwrap();
            assert_eq!(
                (id.number(), id.assigned_number()),
                (number, assigned),
                "{id}"
            );
        }
        assert!(JobId::parse("042").unwrap().is_assigned(), "digits only");
        assert!(!JobId::parse("mail").unwrap().is_assigned());
    }

    #[test]
    fn queue_names_are_validated() {
        assert!(QueueName::parse("emails.high_prio-1").is_ok());
        assert!(QueueName::parse("").is_err());
        assert!(QueueName::parse("a b").unwrap_err().contains("' '"));
        assert_eq!(QueueName::default().as_str(), "default");
    }

    #[test]
    fn queue_names_compare_order_and_hash_as_their_text() {
        use std::collections::{BTreeSet, HashSet};
        let names = ["zeta", "default", "alpha", "default", "defaulty"];
        let parsed: Vec<QueueName> = names.iter().map(|n| QueueName::parse(n).unwrap()).collect();
        assert_eq!(parsed[1], QueueName::default_queue());
        assert_ne!(parsed[4], QueueName::default_queue());
        let ordered: Vec<&str> = parsed
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(QueueName::as_str)
            .collect();
        assert_eq!(ordered, ["alpha", "default", "defaulty", "zeta"]);
        let hashed: HashSet<QueueName> = parsed.iter().cloned().collect();
        assert_eq!(hashed.len(), 4);
        assert!(hashed.contains(&QueueName::default_queue()));
        assert_eq!(format!("{:?}", parsed[1]), "QueueName(\"default\")");
    }

    #[test]
    fn payload_must_be_one_json_value() {
        assert!(Payload::from_json(br#"{"x":1}"#).is_ok());
        assert!(Payload::from_json(b" 3 ").is_ok());
        assert!(
            Payload::from_json(b"{")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(Payload::from_json(b"1 2").is_err());
        assert!(Payload::from_json(b"").is_err());
    }
}
