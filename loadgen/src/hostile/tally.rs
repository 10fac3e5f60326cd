//! What an attack did, counted as it happens (atomics, shared by every connection task) and
//! reported as `Summary::attack`. The server refusing, resetting or answering 413/429/503 is
//! counted here, not as a failure.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Distinct error texts kept; the rest are counted under "other".
const MAX_ERROR_KINDS: usize = 16;

/// `Summary::attack`: one attack phase in numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackSummary {
    /// Connections held at once (the configured count).
    pub connections: usize,
    /// Addresses the connections came from (empty: 127.0.0.1).
    pub sources: Vec<IpAddr>,
    /// The attack's time bound, seconds.
    pub duration_limit_seconds: f64,
    /// Connections established (reconnections included).
    pub connections_opened: u64,
    /// Connects the server refused (RST to the SYN).
    pub connect_refused: u64,
    /// Connects that neither succeeded nor failed within the connect timeout.
    pub connect_timeouts: u64,
    /// Other connect failures (e.g. a source address that cannot be bound).
    pub connect_errors: u64,
    /// Connections the server closed (EOF).
    pub closed_by_server: u64,
    /// Connections the server reset (or a write hit a closed socket).
    pub reset_by_server: u64,
    /// Requests begun (head written or being written).
    pub requests_started: u64,
    /// Requests written whole (head and the body this class sends).
    pub requests_sent: u64,
    /// Response heads read.
    pub responses: u64,
    /// Response statuses seen, by code.
    pub statuses: BTreeMap<String, u64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Socket errors by text (at most 16 kinds, then "other").
    pub errors: BTreeMap<String, u64>,
    /// `history-flood`: the owner's fetch of the flooded entry's download history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryCheck>,
    /// A fresh connection from 127.0.0.1 was not refused at the end.
    pub server_alive: bool,
}

/// The owner opening the flooded entry's download history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryCheck {
    pub entry_id: String,
    pub status: Option<u16>,
    /// Rows in the JSON answer.
    pub rows: Option<u64>,
    pub bytes: u64,
    pub seconds: f64,
    pub error: Option<String>,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    opened: AtomicU64,
    refused: AtomicU64,
    timeouts: AtomicU64,
    connect_errors: AtomicU64,
    closed: AtomicU64,
    reset: AtomicU64,
    started: AtomicU64,
    sent: AtomicU64,
    responses: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    statuses: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Tally {
    pub(crate) fn opened(&self) {
        add(&self.opened, 1);
    }
    pub(crate) fn connect_timeout(&self) {
        add(&self.timeouts, 1);
    }
    pub(crate) fn request_started(&self) {
        add(&self.started, 1);
    }
    pub(crate) fn request_sent(&self) {
        add(&self.sent, 1);
    }
    pub(crate) fn sent(&self, bytes: usize) {
        add(&self.bytes_sent, bytes as u64);
    }
    pub(crate) fn received(&self, bytes: usize) {
        add(&self.bytes_received, bytes as u64);
    }
    pub(crate) fn closed(&self) {
        add(&self.closed, 1);
    }

    pub(crate) fn status(&self, code: u16) {
        add(&self.responses, 1);
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        *statuses.entry(code.to_string()).or_default() += 1;
    }

    /// A failed connect, sorted by kind.
    pub(crate) fn connect_failed(&self, e: &std::io::Error) {
        match e.kind() {
            ErrorKind::ConnectionRefused => add(&self.refused, 1),
            ErrorKind::TimedOut => add(&self.timeouts, 1),
            _ => {
                add(&self.connect_errors, 1);
                self.error(format!("connect: {e}"));
            }
        }
    }

    /// A read or write error on an open connection: a reset or the socket's end.
    pub(crate) fn io_failed(&self, e: &std::io::Error) {
        match e.kind() {
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
                add(&self.reset, 1)
            }
            ErrorKind::UnexpectedEof => add(&self.closed, 1),
            _ => self.error(e.to_string()),
        }
    }

    pub(crate) fn error(&self, text: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let key = if errors.len() < MAX_ERROR_KINDS || errors.contains_key(&text) {
            text
        } else {
            "other".to_owned()
        };
        *errors.entry(key).or_default() += 1;
    }

    pub(crate) fn summary(&self) -> AttackSummary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let lock =
            |m: &Mutex<BTreeMap<String, u64>>| m.lock().unwrap_or_else(|p| p.into_inner()).clone();
        AttackSummary {
            connections_opened: get(&self.opened),
            connect_refused: get(&self.refused),
            connect_timeouts: get(&self.timeouts),
            connect_errors: get(&self.connect_errors),
            closed_by_server: get(&self.closed),
            reset_by_server: get(&self.reset),
            requests_started: get(&self.started),
            requests_sent: get(&self.sent),
            responses: get(&self.responses),
            statuses: lock(&self.statuses),
            bytes_sent: get(&self.bytes_sent),
            bytes_received: get(&self.bytes_received),
            errors: lock(&self.errors),
            ..AttackSummary::default()
        }
    }
}

impl AttackSummary {
    /// Lines for `Summary::to_text`.
    pub(crate) fn to_text(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(code, n)| format!("{code} x{n}"))
            .collect();
        let mut out = format!(
            "\n  attack: {} connections from {} addresses, {} opened, {} refused, {} connect \
             timeouts, {} other connect errors; server closed {}, reset {}",
            self.connections,
            self.sources.len().max(1),
            self.connections_opened,
            self.connect_refused,
            self.connect_timeouts,
            self.connect_errors,
            self.closed_by_server,
            self.reset_by_server,
        );
        out += &format!(
            "\n    requests begun {}, sent whole {}; statuses: {}; {:.1} MB sent",
            self.requests_started,
            self.requests_sent,
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(", ")
            },
            self.bytes_sent as f64 / 1e6
        );
        if let Some(h) = &self.history {
            out += &format!(
                "\n    download history of {}: status {:?}, {:?} rows, {} bytes in {:.2} s{}",
                h.entry_id,
                h.status,
                h.rows,
                h.bytes,
                h.seconds,
                h.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
        out += &format!(
            "\n    server {} at the end",
            if self.server_alive { "alive" } else { "GONE" }
        );
        out
    }
}
