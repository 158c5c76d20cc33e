//! A Splunk HEC receiver with indexer acknowledgement (protocols.md §1.6), on 127.0.0.1.
//!
//! Like a token with `useACK`: `POST /services/collector/event` needs
//! `X-Splunk-Request-Channel: <GUID>` (code 10 without, 11 if not a GUID) and answers
//! `{"text":"Success","code":0,"ackId":N}` with ids counting up from 0 per channel;
//! `POST /services/collector/ack?channel=<GUID>` with `{"acks":[..]}` answers
//! `{"acks":{"N":bool}}`, and forgets an id once it reported it `true`. The ack
//! behaviour is switchable: ids turn true after a delay, never, or the token has ack
//! disabled (no ackId, ack endpoint code 14); [`HecAckReceiver::restart`] forgets every
//! id and starts counting from 0 again, as a restarted Splunk does. Scripted faults
//! ([`Fault`], one per request, with a queue for event requests and one for polls), a
//! rotated token and the events at risk of a resend serve the crash harness.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;

use crate::hec::{plain_body, play_fault, reply, Fault};
use crate::http_server::{json, serve, wait_until, Reply, Task};

/// When an issued ack id turns `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Indexed this long after the request was accepted.
    After(Duration),
    /// Never indexed (a lost or stuck indexer): the client must resend after its timeout.
    Never,
    /// The token has indexer acknowledgement off: no ackId, and the ack endpoint
    /// answers 400 code 14.
    Disabled,
}

#[derive(Debug)]
struct Issued {
    at: Instant,
    events: Vec<String>,
}

#[derive(Debug)]
struct State {
    token: String,
    mode: AckMode,
    /// Per channel: the next id and the ids not yet reported `true`.
    channels: HashMap<String, (u64, BTreeMap<u64, Issued>)>,
    /// Every accepted event id in arrival order (duplicates included).
    accepted: Vec<String>,
    /// Event ids whose request was reported `true` (each at most once per request).
    indexed: Vec<String>,
    polls: u64,
    /// Event ids refused with HEC 400 code 6 and their `invalid-event-number`.
    poison: Vec<String>,
    /// Channel headers seen on event requests.
    seen_channels: Vec<String>,
    /// Event requests holding this event id are answered only after this delay.
    slow: Option<(String, Duration)>,
    /// A load balancer's session cookie (`name=value`): set on event answers; an ack poll
    /// without it lands on another indexer, which knows none of the ids.
    sticky: Option<String>,
    /// Faults for event requests, and for polls.
    faults: VecDeque<Fault>,
    poll_faults: VecDeque<Fault>,
    /// Event requests (polls are counted in `polls`).
    requests: u64,
    /// When the last poll that reported anything `true` ran, and how many events it
    /// reported indexed.
    last_indexed: Option<(Instant, usize)>,
    /// Requests refused for a missing or wrong token.
    auth_failures: u64,
}

/// A running receiver. Dropping it stops accepting connections.
pub struct HecAckReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _task: Task,
}

impl HecAckReceiver {
    pub async fn start(token: &str, mode: AckMode) -> HecAckReceiver {
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            mode,
            channels: HashMap::new(),
            accepted: Vec::new(),
            indexed: Vec::new(),
            polls: 0,
            poison: Vec::new(),
            seen_channels: Vec::new(),
            slow: None,
            sticky: None,
            faults: VecDeque::new(),
            poll_faults: VecDeque::new(),
            requests: 0,
            last_indexed: None,
            auth_failures: 0,
        }));
        let (addr, _task) = serve("127.0.0.1:0", state.clone(), handle).await;
        HecAckReceiver { addr, state, _task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/services/collector/event", self.addr)
    }

    pub fn set_mode(&self, mode: AckMode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Refuse requests holding this event id (HEC code 6 with `invalid-event-number`).
    pub fn poison(&self, event_id: &str) {
        self.state.lock().unwrap().poison.push(event_id.to_string());
    }

    /// Behind a sticky load balancer: event answers set `cookie` (`name=value`), and ack
    /// polls that do not send it back reach an indexer that knows none of the ids.
    pub fn set_sticky_cookie(&self, cookie: &str) {
        self.state.lock().unwrap().sticky = Some(cookie.to_string());
    }

    /// Answers event requests holding `event_id` only after `delay` (a slow indexer).
    pub fn delay_requests_with(&self, event_id: &str, delay: Duration) {
        self.state.lock().unwrap().slow = Some((event_id.to_string(), delay));
    }

    /// Plays `fault` on a coming event request instead of handling it.
    pub fn push_fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    /// Plays `fault` on a coming ack poll instead of handling it.
    pub fn push_poll_fault(&self, fault: Fault) {
        self.state.lock().unwrap().poll_faults.push_back(fault);
    }

    pub fn set_token(&self, token: &str) {
        self.state.lock().unwrap().token = token.to_string();
    }

    /// Event requests (see [`HecAckReceiver::polls`] for the rest).
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Requests refused for a missing or wrong token (401/403).
    pub fn auth_failures(&self) -> u64 {
        self.state.lock().unwrap().auth_failures
    }

    /// Forgets every issued id and counts from 0 again (a restarted Splunk).
    pub fn restart(&self) {
        self.state.lock().unwrap().channels.clear();
    }

    /// Accepted event ids in arrival order (duplicates included).
    pub fn accepted(&self) -> Vec<String> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.state.lock().unwrap().accepted.len()
    }

    /// Event ids of requests reported indexed (`true`).
    pub fn indexed(&self) -> Vec<String> {
        self.state.lock().unwrap().indexed.clone()
    }

    /// Events a client that ran from `since` to `until` may send again once restarted,
    /// having forgotten its pending acks: those of requests it got accepted and never saw
    /// reported indexed, and those of the last poll that reported any (if it was in that
    /// time: the client's acks of them may not have been done). A client's poll rounds
    /// follow one another, so no earlier one can still be unacked.
    pub fn at_risk_between(&self, since: Instant, until: Instant) -> usize {
        let last_poll = match self.state.lock().unwrap().last_indexed {
            Some((at, events)) if at >= since && at < until => events,
            _ => 0,
        };
        self.unconfirmed_between(since, until) + last_poll
    }

    /// Events of requests accepted from `since` to `until` and never reported indexed.
    pub fn unconfirmed_between(&self, since: Instant, until: Instant) -> usize {
        let s = self.state.lock().unwrap();
        s.channels
            .values()
            .flat_map(|(_, ids)| ids.values())
            .filter(|issued| issued.at >= since && issued.at < until)
            .map(|issued| issued.events.len())
            .sum()
    }

    /// Ack ids issued and not yet reported `true`, over all channels.
    pub fn unconfirmed(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.channels.values().map(|(_, ids)| ids.len()).sum()
    }

    pub fn polls(&self) -> u64 {
        self.state.lock().unwrap().polls
    }

    pub fn seen_channels(&self) -> Vec<String> {
        self.state.lock().unwrap().seen_channels.clone()
    }

    /// Waits until at least `n` events were accepted, or `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.accepted_count() >= n).await
    }
}

fn is_guid(s: &str) -> bool {
    let lens = [8, 4, 4, 4, 12];
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn handle(state: Arc<Mutex<State>>, parts: Parts, body: Bytes) -> Reply {
    let (fault, slow) = {
        let mut s = state.lock().unwrap();
        let fault = if parts.uri.path() == "/services/collector/ack" {
            s.poll_faults.pop_front()
        } else {
            s.requests += 1;
            s.faults.pop_front()
        };
        (fault, s.slow.clone())
    };
    let scripted = play_fault(fault, |status, code| reply(status, code, "scripted fault"));
    if let Some(answer) = scripted.await {
        return answer;
    }
    if let Some((event_id, delay)) = slow {
        let holds = plain_body(&parts, &body).is_ok_and(|plain| {
            String::from_utf8_lossy(&plain).contains(&format!("\"{event_id}\""))
        });
        if holds && parts.uri.path().ends_with("/event") {
            tokio::time::sleep(delay).await;
        }
    }
    let mut s = state.lock().unwrap();
    let expected = format!("Splunk {}", s.token);
    match parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        None => {
            s.auth_failures += 1;
            return Ok(reply(401, 2, "Token is required"));
        }
        Some(auth) if auth != expected => {
            s.auth_failures += 1;
            return Ok(reply(403, 4, "Invalid token"));
        }
        _ => {}
    }
    let header_channel = parts
        .headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let query_channel = parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("channel="))
            .map(str::to_string)
    });
    let channel = header_channel.or(query_channel);
    let disabled = s.mode == AckMode::Disabled;
    match parts.uri.path() {
        "/services/collector/event" => {
            if !disabled {
                match &channel {
                    None => return Ok(reply(400, 10, "Data channel is missing")),
                    Some(c) if !is_guid(c) => return Ok(reply(400, 11, "Invalid data channel")),
                    _ => {}
                }
            }
            let Ok(body) = plain_body(&parts, &body) else {
                return Ok(reply(400, 6, "Invalid data format"));
            };
            let mut events = Vec::new();
            for value in
                serde_json::Deserializer::from_slice(&body).into_iter::<serde_json::Value>()
            {
                match value {
                    Ok(v) => events.push(
                        v["event"]["event_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    Err(_) => return Ok(reply(400, 6, "Invalid data format")),
                }
            }
            if events.is_empty() {
                return Ok(reply(400, 5, "No data"));
            }
            if let Some(bad) = events.iter().position(|id| s.poison.contains(id)) {
                return Ok(json(
                    400,
                    serde_json::json!({"text":"Invalid data format","code":6,"invalid-event-number":bad}),
                ));
            }
            s.accepted.extend(events.iter().cloned());
            let Some(channel) = channel.filter(|_| !disabled) else {
                return Ok(reply(200, 0, "Success"));
            };
            s.seen_channels.push(channel.clone());
            let (next, ids) = s.channels.entry(channel).or_default();
            let id = *next;
            *next += 1;
            ids.insert(
                id,
                Issued {
                    at: Instant::now(),
                    events,
                },
            );
            let mut answer = json(
                200,
                serde_json::json!({"text": "Success", "code": 0, "ackId": id}),
            );
            if let Some(cookie) = &s.sticky {
                let value = format!("{cookie}; Path=/; HttpOnly");
                answer.headers_mut().append(
                    http::header::SET_COOKIE,
                    http::HeaderValue::from_str(&value).unwrap(),
                );
            }
            Ok(answer)
        }
        "/services/collector/ack" => {
            s.polls += 1;
            if disabled {
                return Ok(reply(400, 14, "ACK is disabled"));
            }
            let Some(channel) = channel else {
                return Ok(reply(400, 10, "Data channel is missing"));
            };
            if !is_guid(&channel) {
                return Ok(reply(400, 11, "Invalid data channel"));
            }
            let Ok(query) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return Ok(reply(400, 6, "Invalid data format"));
            };
            let Some(asked) = query["acks"].as_array() else {
                return Ok(reply(400, 6, "Invalid data format"));
            };
            // Without the balancer's cookie the poll reaches an indexer that issued nothing.
            let elsewhere = s.sticky.as_ref().is_some_and(|cookie| {
                !parts
                    .headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| v.split(';').any(|pair| pair.trim() == cookie))
            });
            let mode = if elsewhere { AckMode::Never } else { s.mode };
            let mut answer = serde_json::Map::new();
            let mut newly_indexed = Vec::new();
            let ids = s.channels.get_mut(&channel).map(|(_, ids)| ids);
            let mut empty = BTreeMap::new();
            let ids = ids.unwrap_or(&mut empty);
            for id in asked.iter().filter_map(|v| v.as_u64()) {
                if answer.contains_key(&id.to_string()) {
                    continue;
                }
                let done = match (mode, ids.get(&id)) {
                    (AckMode::After(delay), Some(issued)) => issued.at.elapsed() >= delay,
                    _ => false,
                };
                if done {
                    // Splunk forgets an id once it said `true`.
                    if let Some(issued) = ids.remove(&id) {
                        newly_indexed.extend(issued.events);
                    }
                }
                answer.insert(id.to_string(), serde_json::Value::Bool(done));
            }
            if !newly_indexed.is_empty() {
                s.last_indexed = Some((Instant::now(), newly_indexed.len()));
            }
            s.indexed.extend(newly_indexed);
            Ok(json(200, serde_json::json!({ "acks": answer })))
        }
        _ => Ok(reply(404, 404, "Not Found")),
    }
}
