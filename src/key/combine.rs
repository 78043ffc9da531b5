//! Combining extractors: a tuple for a composite key, [`Or`] to fall back.

use http::request::Parts;

use super::{Extracted, Key, KeyExtractor, OnMissing};

/// Falls back to `B` when `A` finds no usable key; built with
/// [`KeyExtractorExt::or`].
///
/// `A`'s key, skip or reject stand; only [`Extracted::Missing`] moves on to
/// `B`, and `B`'s [`OnMissing`] applies when both miss.
#[derive(Debug, Clone)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A: KeyExtractor, B: KeyExtractor> KeyExtractor for Or<A, B> {
    fn extract(&self, parts: &Parts) -> Extracted {
        match self.first.extract(parts) {
            Extracted::Missing(_) => self.second.extract(parts),
            other => other,
        }
    }

    fn on_missing(&self) -> OnMissing {
        self.second.on_missing()
    }
}

/// Combinators on every [`KeyExtractor`].
pub trait KeyExtractorExt: KeyExtractor + Sized {
    /// Uses `other` when `self` finds no usable key.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tollgate::key::{ClientIp, Header, KeyExtractorExt};
    ///
    /// let key = Header::new(HeaderName::from_static("x-api-key")).or(ClientIp::new());
    /// ```
    fn or<B: KeyExtractor>(self, other: B) -> Or<Self, B> {
        Or {
            first: self,
            second: other,
        }
    }
}

impl<E: KeyExtractor> KeyExtractorExt for E {}

/// Folds the parts of a composite key: any reject rejects, any skip skips,
/// any missing part makes the whole key missing.
fn combine<const N: usize>(found: [Extracted; N]) -> Extracted {
    let mut keys = Vec::with_capacity(N);
    let mut missing = None;
    for e in found {
        match e {
            Extracted::Key(k) => keys.push(k),
            Extracted::Reject(p) => return Extracted::Reject(p),
            Extracted::Skip => return Extracted::Skip,
            Extracted::Missing(p) => {
                missing.get_or_insert(p);
            }
        }
    }
    if let Some(p) = missing {
        return Extracted::Missing(p);
    }
    let refs: Vec<&Key> = keys.iter().collect();
    Extracted::Key(Key::compose(&refs))
}

macro_rules! tuple_extractor {
    ($($name:ident),+) => {
        /// A composite key: every part must be found; the key is all of
        /// them together (e.g. per client **and** per route). A part that
        /// is missing makes the whole key missing; the request is then
        /// skipped only if every part's [`OnMissing`] is `Skip`.
        impl<$($name: KeyExtractor),+> KeyExtractor for ($($name,)+) {
            #[allow(non_snake_case)]
            fn extract(&self, parts: &Parts) -> Extracted {
                let ($($name,)+) = self;
                combine([$($name.extract(parts)),+])
            }

            #[allow(non_snake_case)]
            fn on_missing(&self) -> OnMissing {
                let ($($name,)+) = self;
                if [$($name.on_missing()),+].iter().all(|m| *m == OnMissing::Skip) {
                    OnMissing::Skip
                } else {
                    OnMissing::Reject
                }
            }
        }
    };
}

tuple_extractor!(A, B);
tuple_extractor!(A, B, C);
tuple_extractor!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{from_fn, Global, RequestMethod};
    use http::StatusCode;

    fn parts() -> Parts {
        http::Request::get("/").body(()).unwrap().into_parts().0
    }

    fn missing() -> impl KeyExtractor {
        #[derive(Clone)]
        struct Never;
        impl KeyExtractor for Never {
            fn extract(&self, _: &Parts) -> Extracted {
                Extracted::Missing(crate::problem::Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "no",
                    "no",
                ))
            }
        }
        Never
    }

    #[test]
    fn or_falls_back_only_when_the_first_finds_nothing() {
        let e = missing().or(Global).extract(&parts());
        assert!(matches!(e, Extracted::Key(k) if k == Key::from("global")));
        let skip = from_fn(|_: &Parts| None::<Key>)
            .or(Global)
            .extract(&parts());
        assert!(matches!(skip, Extracted::Skip));
    }

    #[test]
    fn a_composite_key_differs_from_its_parts_and_by_order() {
        let ab = (Global, RequestMethod).extract(&parts());
        let ba = (RequestMethod, Global).extract(&parts());
        match (ab, ba) {
            (Extracted::Key(a), Extracted::Key(b)) => {
                assert_ne!(a, b);
                assert_ne!(a, Key::from("global"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_part_makes_the_composite_missing() {
        assert!(matches!(
            (Global, missing()).extract(&parts()),
            Extracted::Missing(_)
        ));
        assert_eq!((Global, missing()).on_missing(), OnMissing::Reject);
    }
}
