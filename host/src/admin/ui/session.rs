//! Console sessions: signing in with the admin token creates one, kept in memory only
//! (a restart signs everyone out). The browser holds a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie; the host keeps only its SHA-256, with the session's CSRF
//! token and expiry. Never logs either.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie that carries the session id.
pub const COOKIE: &str = "agenthook_session";
/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; signing in beyond it ends the oldest one.
const MAX_SESSIONS: usize = 256;

/// A signed-in browser, as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    /// Sent back with every state-changing request (form field or header).
    pub csrf: String,
}

struct Entry {
    csrf: String,
    created: Instant,
}

/// The open sessions, by the SHA-256 of their id.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Entry>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Start a session; returns the id for the cookie.
    pub fn create(&self) -> String {
        let id = random_hex();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, e| e.created.elapsed() < LIFETIME);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| *k)
        {
            open.remove(&oldest);
        }
        open.insert(
            key(&id),
            Entry {
                csrf: random_hex(),
                created: Instant::now(),
            },
        );
        id
    }

    /// The session this cookie value names, if it is open and not expired.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(id);
        match open.get(&k) {
            Some(e) if e.created.elapsed() < LIFETIME => Some(Session {
                csrf: e.csrf.clone(),
            }),
            Some(_) => {
                open.remove(&k);
                None
            }
            None => None,
        }
    }

    /// End a session (sign out).
    pub fn end(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(id));
    }
}

impl Session {
    /// Whether `given` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        !given.is_empty() && bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session id in a request's `Cookie` headers.
pub fn cookie_value(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_check_and_end() {
        let sessions = Sessions::default();
        let id = sessions.create();
        assert_eq!(id.len(), 64);
        let s = sessions.get(&id).expect("open");
        assert_eq!(s.csrf.len(), 64);
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        assert!(!s.csrf_matches(&id), "the session id is not the CSRF token");
        assert!(sessions.get("not-a-session").is_none());
        let other = sessions.create();
        assert_ne!(
            sessions.get(&other).unwrap().csrf,
            s.csrf,
            "each session has its own CSRF token"
        );
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
        assert!(sessions.get(&other).is_some());
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let first = sessions.create();
        for _ in 0..MAX_SESSIONS {
            sessions.create();
        }
        assert!(
            sessions.get(&first).is_none(),
            "the oldest session was ended"
        );
        assert_eq!(sessions.open.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn cookie_attributes_and_parsing() {
        let c = set_cookie("abc");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
            assert!(c.contains(attr), "{c}");
        }
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; agenthook_session=xyz".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("xyz"));
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "agenthook_session=".parse().unwrap());
        assert_eq!(cookie_value(&h), None);
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}
