//! `GET /`: the live dashboard, one self-contained page (inline CSS and JS, no CDN,
//! works offline) that polls `/status` every 500 ms.

/// The page. Each peer row carries `data-peer="ADDR"` and `data-state="STATE"` with
/// the `/status` state words; a token given as `?access_token=` is reused for polls.
pub(super) const PAGE: &str = include_str!("dashboard.html");
