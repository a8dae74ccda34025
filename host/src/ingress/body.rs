//! Reading a request body within its bounds: the size limit (413), the body deadline
//! (408), and the budget of body bytes buffered at once across all requests (503
//! `overloaded`). Bytes are reserved before they are buffered — a declared
//! `Content-Length` up front, a chunked body chunk by chunk as it arrives — and go
//! back when the caller drops the reservation, whichever way the request ends.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;

use super::Rejection;
use crate::http::{BodyBudget, Reservation};

/// `Retry-After` of an `overloaded` refusal: bodies in flight finish (or time out)
/// within seconds.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

/// The bounds a body is read within.
#[derive(Debug, Clone)]
pub(super) struct BodyLimits {
    /// `server.max_body_bytes`.
    pub max_bytes: usize,
    /// `server.body_timeout_secs`: from the headers to the body's last byte.
    pub timeout: Duration,
    /// `server.max_inflight_body_mb`, shared by every request.
    pub budget: BodyBudget,
}

impl BodyLimits {
    fn too_large(&self) -> Rejection {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body exceeds {} bytes", self.max_bytes),
        )
    }

    fn overloaded(&self) -> Rejection {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the host is buffering as many request bodies as it allows; retry shortly",
        )
        .retry_after(OVERLOADED_RETRY_AFTER_SECS)
    }

    fn timed_out(&self) -> Rejection {
        Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {} s",
                self.timeout.as_secs_f64()
            ),
        )
    }
}

/// Read the whole body, and the reservation that holds its bytes in the budget.
pub(super) async fn read<B>(
    headers: &HeaderMap,
    body: B,
    limits: &BodyLimits,
) -> Result<(Bytes, Reservation), Rejection>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let declared = declared_length(headers, limits)?;
    // Refuse before reading a byte when the declared length does not fit; the length
    // is enforced by hyper's framing, so the body cannot outgrow it.
    let reservation = limits
        .budget
        .reserve(declared.unwrap_or(0))
        .ok_or_else(|| limits.overloaded())?;
    tokio::time::timeout(limits.timeout, collect(body, declared, reservation, limits))
        .await
        .unwrap_or_else(|_| Err(limits.timed_out()))
}

/// `Content-Length`, when the request declares one: refused early when over the limit.
fn declared_length(headers: &HeaderMap, limits: &BodyLimits) -> Result<Option<usize>, Rejection> {
    let Some(len) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    match len.to_str().ok().and_then(|s| s.parse::<u64>().ok()) {
        Some(n) if n > limits.max_bytes as u64 => Err(limits.too_large()),
        // At most `max_bytes`, which is a usize.
        Some(n) => Ok(Some(n as usize)),
        None => Err(Rejection::bad_request(
            "malformed_header",
            "content-length is not a number",
        )),
    }
}

async fn collect<B>(
    mut body: B,
    declared: Option<usize>,
    mut reservation: Reservation,
    limits: &BodyLimits,
) -> Result<(Bytes, Reservation), Rejection>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            Rejection::bad_request("body_read_error", "the request body could not be read")
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let len = buf.len() + data.len();
        if len > limits.max_bytes {
            return Err(limits.too_large());
        }
        if len > reservation.bytes() && !reservation.grow(len - reservation.bytes()) {
            return Err(limits.overloaded());
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), reservation))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::Frame;
    use tokio::sync::mpsc;

    use super::*;

    fn limits(max_bytes: usize, budget: usize) -> BodyLimits {
        BodyLimits {
            max_bytes,
            timeout: Duration::from_secs(10),
            budget: BodyBudget::new(budget),
        }
    }

    /// A body the test feeds chunk by chunk; it ends when the sender is dropped.
    struct Chunks(mpsc::Receiver<Bytes>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c))))
        }
    }

    fn chunked() -> (mpsc::Sender<Bytes>, Chunks) {
        let (tx, rx) = mpsc::channel(8);
        (tx, Chunks(rx))
    }

    fn length(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, n.into());
        h
    }

    fn chunk(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[tokio::test]
    async fn a_declared_length_is_reserved_up_front_and_released_on_drop() {
        let l = limits(100, 120);
        let (tx, body) = chunked();
        tx.send(chunk(40)).await.unwrap();
        drop(tx);
        let (bytes, held) = read(&length(40), body, &l).await.unwrap();
        assert_eq!((bytes.len(), l.budget.in_use()), (40, 40));
        // A second declared 100 no longer fits; nothing is read and nothing kept.
        let (_tx, body) = chunked();
        let e = read(&length(100), body, &l).await.unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (503, "overloaded"));
        assert_eq!(e.retry_after_secs, Some(1));
        assert_eq!(l.budget.in_use(), 40);
        drop(held);
        assert_eq!(l.budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_chunked_body_reserves_as_it_arrives() {
        let l = limits(1000, 100);
        let (tx, body) = chunked();
        let l2 = l.clone();
        let reading = tokio::spawn(async move { read(&HeaderMap::new(), body, &l2).await });
        tx.send(chunk(60)).await.unwrap();
        tx.send(chunk(30)).await.unwrap();
        while l.budget.in_use() < 90 {
            tokio::task::yield_now().await;
        }
        // Someone else holds the rest of the budget: the next chunk does not fit.
        let squat = l.budget.reserve(10).unwrap();
        tx.send(chunk(20)).await.unwrap();
        let e = reading.await.unwrap().unwrap_err();
        assert_eq!(e.reason, "overloaded");
        assert_eq!(
            l.budget.in_use(),
            10,
            "the failed read gave back its 90 bytes"
        );
        drop(squat);
        assert_eq!(l.budget.in_use(), 0);
    }

    #[tokio::test]
    async fn the_size_limit_holds_with_and_without_a_declared_length() {
        let l = limits(50, 1000);
        let (_tx, body) = chunked();
        let e = read(&length(51), body, &l).await.unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (413, "body_too_large"));
        let (tx, body) = chunked();
        tx.send(chunk(30)).await.unwrap();
        tx.send(chunk(30)).await.unwrap();
        drop(tx);
        let e = read(&HeaderMap::new(), body, &l).await.unwrap_err();
        assert_eq!(e.reason, "body_too_large");
        assert_eq!(l.budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_slow_body_times_out_and_gives_back_its_bytes() {
        let l = BodyLimits {
            timeout: Duration::from_millis(100),
            ..limits(1000, 1000)
        };
        let (tx, body) = chunked();
        tx.send(chunk(10)).await.unwrap();
        let e = read(&length(100), body, &l).await.unwrap_err();
        assert_eq!((e.status.as_u16(), e.reason), (408, "body_timeout"));
        assert_eq!(l.budget.in_use(), 0);
        drop(tx);
    }
}
