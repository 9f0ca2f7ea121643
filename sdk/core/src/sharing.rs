//! Decoding an environment so that a draft and the published revision of
//! the same number are one value in memory, as they were before encoding.
//!
//! The encoded form holds such an item twice (once as the draft, once as
//! the revision). The drafts come first: decoding them remembers each one
//! by key on this thread, and decoding the revisions then compares each
//! revision with the draft of its key and number and keeps the draft's
//! copy, dropping the one just decoded at once. Dropped at once, its memory
//! is reused by what is decoded next; dropped after the whole state is
//! decoded, tens of thousands of copies would leave as many holes in the
//! heap, which the allocator cannot hand back.
//!
//! Encoded forms with the revisions first still decode (each revision
//! keeps its own copy); [`crate::State::share_revisions`] then links what
//! this did not.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::thread::LocalKey;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::model::{Flag, Segment};
use crate::state::{Draft, Revisions};

/// The drafts of the environment being decoded on this thread, by key.
type Remembered<T> = RefCell<BTreeMap<String, Arc<T>>>;

thread_local! {
    static FLAGS: Remembered<Flag> = const { RefCell::new(BTreeMap::new()) };
    static SEGMENTS: Remembered<Segment> = const { RefCell::new(BTreeMap::new()) };
}

/// An item with a revision number that drafts and revisions share.
pub(crate) trait Revisioned:
    for<'de> Deserialize<'de> + PartialEq + Sized + 'static
{
    fn revision(&self) -> u64;
    fn remembered() -> &'static LocalKey<Remembered<Self>>;
}

impl Revisioned for Flag {
    fn revision(&self) -> u64 {
        self.version
    }
    fn remembered() -> &'static LocalKey<Remembered<Self>> {
        &FLAGS
    }
}

impl Revisioned for Segment {
    fn revision(&self) -> u64 {
        self.version
    }
    fn remembered() -> &'static LocalKey<Remembered<Self>> {
        &SEGMENTS
    }
}

/// Forgets what this thread remembered for sharing.
pub(crate) fn forget() {
    let _ = FLAGS.try_with(|m| m.borrow_mut().clear());
    let _ = SEGMENTS.try_with(|m| m.borrow_mut().clear());
}

/// Makes each draft equal to the revision of its key and number share
/// that revision.
pub(crate) fn relink<T: Revisioned>(
    drafts: &mut BTreeMap<String, Draft<T>>,
    revisions: &BTreeMap<String, Revisions<T>>,
) {
    for (key, d) in drafts.iter_mut() {
        let rev = revisions.get(key).and_then(|r| r.get(&d.item.revision()));
        if let Some(rev) = rev.filter(|r| ***r == *d.item) {
            d.item = rev.clone();
        }
    }
}

/// `deserialize_with` for the drafts: decodes them and remembers them.
pub(crate) fn drafts<'de, D, T>(d: D) -> Result<BTreeMap<String, Draft<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Revisioned,
    Draft<T>: Deserialize<'de>,
{
    let drafts = BTreeMap::<String, Draft<T>>::deserialize(d)?;
    let _ = T::remembered().try_with(|m| {
        let mut m = m.borrow_mut();
        m.clear();
        for (k, draft) in &drafts {
            m.insert(k.clone(), draft.item.clone());
        }
    });
    Ok(drafts)
}

/// `deserialize_with` for the revisions: a revision equal to the
/// remembered draft of its key and number is that draft.
pub(crate) fn revisions<'de, D, T>(d: D) -> Result<BTreeMap<String, Revisions<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Revisioned,
{
    let out = d.deserialize_map(Outer::<T>(PhantomData));
    let _ = T::remembered().try_with(|m| m.borrow_mut().clear());
    out
}

struct Outer<T>(PhantomData<T>);

impl<'de, T: Revisioned> Visitor<'de> for Outer<T> {
    type Value = BTreeMap<String, Revisions<T>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of keys to revisions")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let inner = map.next_value_seed(Inner::<T> {
                key: &key,
                item: PhantomData,
            })?;
            out.insert(key, inner);
        }
        Ok(out)
    }
}

struct Inner<'a, T> {
    key: &'a str,
    item: PhantomData<T>,
}

impl<'de, T: Revisioned> DeserializeSeed<'de> for Inner<'_, T> {
    type Value = Revisions<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Revisioned> Visitor<'de> for Inner<'_, T> {
    type Value = Revisions<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of revision numbers to items")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(rev) = map.next_key::<u64>()? {
            let item: T = map.next_value()?;
            let draft = T::remembered()
                .try_with(|m| {
                    m.borrow()
                        .get(self.key)
                        .filter(|d| d.revision() == rev && ***d == item)
                        .cloned()
                })
                .ok()
                .flatten();
            out.push((rev, draft.unwrap_or_else(|| Arc::new(item))));
        }
        Ok(out.into_iter().collect())
    }
}
