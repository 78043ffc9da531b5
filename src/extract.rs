//! Per-handler limits as an axum extractor: the Rust form of django's
//! `@ratelimit` decorator (feature `axum`).
//!
//! A handler that takes a [`Limited<L>`] runs only if the request passes
//! the limiter `L` names; otherwise the extractor answers for it (429 with
//! `Retry-After` and problem+json, or 403, 401… exactly as the layer
//! would). `L` names a [`RateLimitLayer`] kept in a `static`, so every
//! setting of the layer (key, rules, tiers, overrides, backend, headers,
//! rejection handler) applies. Return the `Limited` value in the response
//! (it is [`IntoResponseParts`]) to add the rate-limit headers.
//!
//! The other way to limit one handler is the layer itself through axum's
//! `route_layer` (or `MethodRouter::layer`), which also applies
//! [`Rule::count_only`](crate::policy::Rule::count_only) refunds; the
//! extractor does not see the response, so it cannot refund.

use std::fmt;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponseParts, Response, ResponseParts};
use http::request::Parts;

use crate::backend::Backend;
use crate::key::KeyExtractor;
use crate::layer::{Admission, RateLimitLayer};

/// Names the limiter of a handler: a [`RateLimitLayer`] that lives for the
/// whole program (a `static`, e.g. in a `LazyLock`).
///
/// ```
/// use std::sync::LazyLock;
/// use axum::{routing::post, Router};
/// use tollgate::extract::{HandlerLimit, Limited};
/// use tollgate::{Quota, RateLimitLayer};
///
/// static LOGIN: LazyLock<RateLimitLayer> =
///     LazyLock::new(|| RateLimitLayer::new(Quota::per_minute(5)));
///
/// struct Login;
/// impl HandlerLimit for Login {
///     type Key = tollgate::key::ClientIp;
///     type Backend = tollgate::backend::MemoryBackend;
///     fn layer() -> &'static RateLimitLayer { &LOGIN }
/// }
///
/// // Five tries a minute per client address; the headers go on the answer.
/// async fn login(limited: Limited<Login>) -> (Limited<Login>, &'static str) {
///     (limited, "welcome")
/// }
///
/// let app: Router = Router::new().route("/login", post(login));
/// ```
pub trait HandlerLimit: 'static {
    /// The layer's key extractor.
    type Key: KeyExtractor;
    /// The layer's backend.
    type Backend: Backend;
    /// The limiter.
    fn layer() -> &'static RateLimitLayer<Self::Key, Self::Backend>;
}

/// Proof that a request passed the limiter `L`: take it as a handler
/// argument. Rejections are whole responses (429, 403, 401, 503…).
pub struct Limited<L> {
    admission: Option<Admission>,
    _limit: PhantomData<fn() -> L>,
}

impl<L> Limited<L> {
    /// Whether the request was checked (`false` when it passed unlimited:
    /// an exempt route, an allow-listed client, a skipped key).
    pub fn was_checked(&self) -> bool {
        self.admission.is_some()
    }
}

impl<L> fmt::Debug for Limited<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limited")
            .field("limit", &std::any::type_name::<L>())
            .field("checked", &self.admission.is_some())
            .finish()
    }
}

impl<L, S> FromRequestParts<S> for Limited<L>
where
    L: HandlerLimit,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match L::layer().check_head(parts).await {
            Ok(admission) => Ok(Limited {
                admission,
                _limit: PhantomData,
            }),
            Err(answer) => Err(answer.map(axum::body::Body::from)),
        }
    }
}

impl<L> IntoResponseParts for Limited<L> {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if let Some(admission) = &self.admission {
            admission.write_headers(res.headers_mut());
        }
        Ok(res)
    }
}
