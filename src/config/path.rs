//! The path of a value in a configuration: `routes[2].quota`.

use std::fmt;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Seg {
    /// A field (or a map key: a tier, a profile).
    Key(String),
    /// An element of a list.
    Index(usize),
}

/// A path from the top of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Path(Vec<Seg>);

impl Path {
    pub(crate) fn push(&mut self, seg: Seg) {
        self.0.push(seg);
    }

    pub(crate) fn pop(&mut self) -> Option<Seg> {
        self.0.pop()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Seg> {
        self.0.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn last(&self) -> Option<&Seg> {
        self.0.last()
    }

    pub(crate) fn parent(&self) -> Path {
        Path(self.0[..self.0.len().saturating_sub(1)].to_vec())
    }

    pub(crate) fn starts_with(&self, prefix: &Path) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// This path with `key` after it.
    pub(crate) fn key(&self, key: &str) -> Path {
        let mut p = self.clone();
        p.push(Seg::Key(key.to_owned()));
        p
    }

    /// This path with `[index]` after it.
    pub(crate) fn index(&self, index: usize) -> Path {
        let mut p = self.clone();
        p.push(Seg::Index(index));
        p
    }
}

impl From<Vec<Seg>> for Path {
    fn from(segs: Vec<Seg>) -> Self {
        Path(segs)
    }
}

/// A bare field name is written as it is; a key with other characters
/// (a tier named `free plan`) is quoted.
fn is_bare(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(index) => write!(f, "[{index}]")?,
                Seg::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare(key) {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_as_written_in_a_file() {
        let p = Path::default()
            .key("routes")
            .index(2)
            .key("tiers")
            .key("free plan");
        assert_eq!(p.to_string(), "routes[2].tiers.\"free plan\"");
        assert!(p.starts_with(&Path::default().key("routes").index(2)));
        assert_eq!(Path::default().to_string(), "");
    }
}
