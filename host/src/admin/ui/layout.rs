//! The frame every console page shares (head, navigation, skip link, sign-out form)
//! and small pieces of markup: times, status badges, sparklines. HTML is built with
//! `maud`, which escapes every interpolated value.

use maud::{DOCTYPE, Markup, html};

use super::history::Series;

/// The console's sections, in navigation order: (path, label).
const NAV: [(&str, &str); 5] = [
    ("/ui", "Overview"),
    ("/ui/events", "Events"),
    ("/ui/dlq", "Dead letters"),
    ("/ui/plugins", "Plugins"),
    ("/ui/send", "Send a test event"),
];

/// A signed-in page: `current` is the nav path it belongs to.
pub fn page(title: &str, current: &str, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(csrf);
                title { (title) " · agenthook" }
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "agenthook" }
                    nav aria-label="Console" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    @if path == current {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form.signout method="post" action="/ui/logout" {
                        (csrf_field(csrf))
                        button type="submit" { "Sign out" }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The sign-in page (public: it shows nothing but the form).
pub fn login(error: Option<&str>, next: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · agenthook" }
                link rel="stylesheet" href="/ui/static/console.css";
            }
            body {
                main #main .login {
                    h1 { "agenthook console" }
                    form method="post" action="/ui/login" {
                        @if let Some(e) = error {
                            p.error role="alert" { (e) }
                        }
                        input type="hidden" name="next" value=(next);
                        label for="token" { "Admin token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        p.hint { "The server's " code { "admin_token" } ", or the contents of "
                            code { "data_dir/admin.token" } "." }
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// The hidden form field carrying the session's CSRF token.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A status word with its colour; the word itself carries the meaning.
pub fn status(s: &str) -> Markup {
    html! { span class={ "status s-" (s) } { (s) } }
}

/// Unix milliseconds as UTC, `2026-12-04 17:30:36.123Z`.
pub fn time(ms: u64) -> Markup {
    html! { time datetime=(iso(ms)) { (iso(ms)) } }
}

pub fn iso(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A small line chart of `series` (oldest left), labelled for screen readers.
pub fn sparkline(label: &str, unit: &str, series: &Series) -> Markup {
    const W: f64 = 150.0;
    const H: f64 = 28.0;
    let values = &series.values;
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let last = values.last().copied().unwrap_or(0.0);
    let step = if values.len() > 1 {
        W / (values.len() - 1) as f64
    } else {
        W
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = if max > 0.0 {
                H - v / max * (H - 2.0)
            } else {
                H - 1.0
            };
            format!("{:.1},{:.1}", i as f64 * step, y)
        })
        .collect();
    let text = format!("{label}: now {last:.1} {unit}, peak {max:.1} over the last minutes");
    html! {
        svg.spark role="img" aria-label=(text) viewBox="0 0 150 28" width="150" height="28" {
            title { (text) }
            @if points.len() > 1 {
                polyline points=(points.join(" ")) fill="none" stroke="currentColor" stroke-width="1.5" {}
            } @else {
                line x1="0" y1="27" x2="150" y2="27" stroke="currentColor" stroke-dasharray="2 3" {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(iso(951_782_400_123), "2000-02-29 00:00:00.123Z");
        assert_eq!(iso(1_796_405_436_000), "2026-12-04 17:30:36.000Z");
    }

    #[test]
    fn values_are_escaped() {
        let m = status("<script>alert(1)</script>").into_string();
        assert!(!m.contains("<script>"), "{m}");
        assert!(m.contains("&lt;script&gt;"), "{m}");
    }
}
