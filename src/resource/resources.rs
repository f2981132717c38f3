//! [`Resources`]: an amount of every kind of resource, in integer units.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::amount::{self, Unit};
use super::error::ResourceError;
use crate::id::{excerpt, normalize_name};

/// The name of a resource that is not cpu, memory or storage (`gpu`, `llm_tokens`).
#[derive(Debug, Clone, Eq, PartialOrd, Ord)]
pub struct ExtendedName(Arc<str>);

impl std::hash::Hash for ExtendedName {
    /// The name's hash, as the derived one was (equal names hash alike).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for ExtendedName {
    /// Names are mostly clones of one another (the ledger's dimensions, the slot
    /// resource every allocation carries): the same string is not compared byte by
    /// byte.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || crate::id::same_name(&self.0, &other.0)
    }
}

impl ExtendedName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name for the crate's own bookkeeping that no parsed name can equal (parsing
    /// refuses spaces), so it never collides with a host's resource.
    pub(crate) fn internal(name: &str) -> Self {
        debug_assert!(ResourceName::new(name).is_err());
        ExtendedName(Arc::from(name))
    }
}

/// A kind of resource.
///
/// `cpu` is counted in millicores, `memory` and `storage` in bytes, and extended
/// resources (any other valid name) in plain units. Names are parsed case-insensitively.
///
/// ```
/// use concord::ResourceName;
/// let gpu: ResourceName = "GPU".parse().unwrap();
/// assert_eq!(gpu.to_string(), "gpu");
/// assert_eq!("cpu".parse::<ResourceName>().unwrap(), ResourceName::Cpu);
/// assert_eq!(ResourceName::Memory.parse_amount("1.5Gi").unwrap(), 1_610_612_736);
/// assert_eq!(ResourceName::Cpu.format_amount(1500), "1500m");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceName {
    /// CPU, in millicores.
    Cpu,
    /// Memory, in bytes.
    Memory,
    /// Storage, in bytes.
    Storage,
    /// A host-named resource, in plain units.
    Extended(ExtendedName),
}

impl ResourceName {
    /// Parses and validates a resource name.
    pub fn new(raw: &str) -> Result<Self, ResourceError> {
        let name = normalize_name("resource", raw)?;
        Ok(match &*name {
            "cpu" => ResourceName::Cpu,
            "memory" => ResourceName::Memory,
            "storage" => ResourceName::Storage,
            _ => ResourceName::Extended(ExtendedName(name)),
        })
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        match self {
            ResourceName::Cpu => "cpu",
            ResourceName::Memory => "memory",
            ResourceName::Storage => "storage",
            ResourceName::Extended(n) => n.as_str(),
        }
    }

    fn unit(&self) -> Unit {
        match self {
            ResourceName::Cpu => Unit::Cpu,
            ResourceName::Memory | ResourceName::Storage => Unit::Bytes,
            ResourceName::Extended(_) => Unit::Count,
        }
    }

    /// Parses a human amount of this resource into base units: `2`, `1.5` or `500m` for
    /// cpu; `2Gi`, `1.5G` or `512Mi` for memory and storage (a unit is required); `4`
    /// or `100k` for extended resources.
    ///
    /// # Errors
    /// A [`ResourceError::Amount`] naming the resource and the text.
    pub fn parse_amount(&self, text: &str) -> Result<u64, ResourceError> {
        amount::parse(self.unit(), text).map_err(|source| ResourceError::Amount {
            resource: self.as_str().to_owned(),
            source,
        })
    }

    /// Formats base units of this resource exactly, in the shortest unit that is exact.
    pub fn format_amount(&self, value: u64) -> String {
        amount::format(self.unit(), value)
    }
}

impl FromStr for ResourceName {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, ResourceError> {
        ResourceName::new(s)
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ResourceName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResourceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ResourceName::new(&raw).map_err(de::Error::custom)
    }
}

/// An amount of every kind of resource, in integer units: cpu millicores, memory bytes,
/// storage bytes, and any number of named extended resources.
///
/// Arithmetic is checked: it never wraps and never goes below zero silently. Amounts
/// parse from and print as human text (`cpu=500m,memory=2Gi,gpu=1`), and serialize as
/// a map of the same strings.
///
/// ```
/// use concord::Resources;
///
/// let need: Resources = "cpu=500m, memory=1.5Gi, gpu=1".parse()?;
/// let capacity: Resources = "cpu=4,memory=16Gi,gpu=2".parse()?;
/// assert!(need.fits(&capacity));
/// let left = capacity.checked_sub(&need)?;
/// assert_eq!(left.to_string(), "cpu=3500m,memory=14848Mi,gpu=1");
/// assert!("memory=2".parse::<Resources>().is_err()); // a unit is required
/// # Ok::<(), concord::ResourceError>(())
/// ```
#[derive(Default, PartialEq, Eq, Hash)]
pub struct Resources {
    cpu: u64,
    memory: u64,
    storage: u64,
    extended: Extended,
}

impl Clone for Resources {
    fn clone(&self) -> Self {
        Resources {
            cpu: self.cpu,
            memory: self.memory,
            storage: self.storage,
            extended: self.extended.clone(),
        }
    }

    /// Field by field, so that the extended amounts keep what they share with
    /// `source`: nothing moves when both hold none, and an amount of the same name
    /// keeps its name.
    fn clone_from(&mut self, source: &Self) {
        self.cpu = source.cpu;
        self.memory = source.memory;
        self.storage = source.storage;
        self.extended.clone_from(&source.extended);
    }
}

/// The extended amounts of a [`Resources`], sorted by name, without zero amounts, so
/// that equal resources compare equal.
///
/// Most values name at most one extended resource (the coordinator's task slots), so
/// one entry is kept inline and only a second one moves them to the heap: building and
/// cloning such values allocates nothing.
#[derive(Debug)]
enum Extended {
    /// No entry or one.
    Inline(Option<(ExtendedName, u64)>),
    /// Any number; clearing keeps the buffer for the next use.
    Heap(Vec<(ExtendedName, u64)>),
}

impl Extended {
    const fn new() -> Self {
        Extended::Inline(None)
    }

    fn as_slice(&self) -> &[(ExtendedName, u64)] {
        match self {
            Extended::Inline(one) => one.as_slice(),
            Extended::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(ExtendedName, u64)] {
        match self {
            Extended::Inline(one) => one.as_mut_slice(),
            Extended::Heap(v) => v,
        }
    }

    /// Sets the amount of `name`, removing it at zero.
    fn set(&mut self, name: &ExtendedName, amount: u64) {
        match self.as_slice().binary_search_by(|(k, _)| k.cmp(name)) {
            Ok(i) if amount == 0 => self.remove(i),
            Ok(i) => self.as_mut_slice()[i].1 = amount,
            Err(_) if amount == 0 => {}
            Err(i) => self.insert(i, (name.clone(), amount)),
        }
    }

    fn insert(&mut self, i: usize, entry: (ExtendedName, u64)) {
        match self {
            Extended::Inline(one) => match one.take() {
                None => *one = Some(entry),
                Some(first) => {
                    let mut v = Vec::with_capacity(4);
                    v.push(first);
                    v.insert(i, entry);
                    *self = Extended::Heap(v);
                }
            },
            Extended::Heap(v) => v.insert(i, entry),
        }
    }

    fn remove(&mut self, i: usize) {
        match self {
            Extended::Inline(one) => *one = None,
            Extended::Heap(v) => {
                v.remove(i);
            }
        }
    }

    fn clear(&mut self) {
        match self {
            Extended::Inline(one) => *one = None,
            Extended::Heap(v) => v.clear(),
        }
    }
}

impl Default for Extended {
    fn default() -> Self {
        Extended::new()
    }
}

impl Clone for Extended {
    /// A clone of one entry or none is inline, whatever the original's form.
    fn clone(&self) -> Self {
        match self.as_slice() {
            [] => Extended::Inline(None),
            [one] => Extended::Inline(Some(one.clone())),
            many => Extended::Heap(many.to_vec()),
        }
    }

    /// Nothing to do when both hold nothing (most requirements), and an inline
    /// entry of the same name as `source`'s one entry takes its amount and keeps
    /// its name: requirements copied over the last task's, on every assignment,
    /// carry the same slot resource, and moving its name's count is two atomic
    /// operations.
    fn clone_from(&mut self, source: &Self) {
        match (&mut *self, source.as_slice()) {
            (Extended::Inline(None), []) => {}
            (Extended::Inline(Some((name, amount))), [(n, a)]) if *name == *n => *amount = *a,
            _ => *self = source.clone(),
        }
    }
}

impl PartialEq for Extended {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Extended {}

impl Hash for Extended {
    /// Hashes as the slice of entries: the same as the `Vec` it replaced.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl Resources {
    /// No resources at all.
    pub const fn new() -> Self {
        Resources {
            cpu: 0,
            memory: 0,
            storage: 0,
            extended: Extended::new(),
        }
    }

    /// Sets cpu, in millicores.
    pub fn with_cpu_millis(mut self, millis: u64) -> Self {
        self.cpu = millis;
        self
    }

    /// Sets memory, in bytes.
    pub fn with_memory_bytes(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    /// Sets storage, in bytes.
    pub fn with_storage_bytes(mut self, bytes: u64) -> Self {
        self.storage = bytes;
        self
    }

    /// Sets the amount of `name` (any resource, built in or extended).
    pub fn with(mut self, name: &ResourceName, amount: u64) -> Self {
        self.set(name, amount);
        self
    }

    /// Sets the amount of the resource called `name`.
    ///
    /// # Errors
    /// [`ResourceError::Name`] if `name` is not a valid resource name.
    pub fn with_named(self, name: &str, amount: u64) -> Result<Self, ResourceError> {
        Ok(self.with(&ResourceName::new(name)?, amount))
    }

    /// Sets the amount of `name` in place.
    pub fn set(&mut self, name: &ResourceName, amount: u64) {
        match name {
            ResourceName::Cpu => self.cpu = amount,
            ResourceName::Memory => self.memory = amount,
            ResourceName::Storage => self.storage = amount,
            ResourceName::Extended(n) => self.extended.set(n, amount),
        }
    }

    /// Sets every amount to zero, keeping any storage for reuse.
    pub(crate) fn clear(&mut self) {
        self.cpu = 0;
        self.memory = 0;
        self.storage = 0;
        self.extended.clear();
    }

    /// CPU in millicores.
    pub fn cpu_millis(&self) -> u64 {
        self.cpu
    }

    /// Memory in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory
    }

    /// Storage in bytes.
    pub fn storage_bytes(&self) -> u64 {
        self.storage
    }

    /// The amount of `name` (zero if absent).
    pub fn get(&self, name: &ResourceName) -> u64 {
        match name {
            ResourceName::Cpu => self.cpu,
            ResourceName::Memory => self.memory,
            ResourceName::Storage => self.storage,
            ResourceName::Extended(n) => self.extended_amount(n.as_str()),
        }
    }

    /// The amount of the resource called `name` (zero if absent or not a valid name).
    pub fn amount(&self, name: &str) -> u64 {
        match name {
            "cpu" => self.cpu,
            "memory" => self.memory,
            "storage" => self.storage,
            other => self.extended_amount(other),
        }
    }

    fn extended_amount(&self, name: &str) -> u64 {
        let ext = self.extended.as_slice();
        ext.binary_search_by(|(k, _)| k.as_str().cmp(name))
            .map_or(0, |i| ext[i].1)
    }

    /// Whether every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.cpu == 0
            && self.memory == 0
            && self.storage == 0
            && self.extended.as_slice().is_empty()
    }

    /// Every non-zero amount, cpu, memory and storage first, then extended resources by
    /// name.
    pub fn iter(&self) -> impl Iterator<Item = (ResourceName, u64)> + '_ {
        // The three fixed amounts as plain numbers: an array of names would be built
        // and dropped whole on every call, most of them for nothing.
        let fixed = [self.cpu, self.memory, self.storage];
        let name = |i: usize| match i {
            0 => ResourceName::Cpu,
            1 => ResourceName::Memory,
            _ => ResourceName::Storage,
        };
        (0..fixed.len())
            .filter(move |&i| fixed[i] > 0)
            .map(move |i| (name(i), fixed[i]))
            .chain(
                (self.extended.as_slice().iter())
                    .filter(|(_, v)| *v > 0)
                    .map(|(n, v)| (ResourceName::Extended(n.clone()), *v)),
            )
    }

    /// The extended resources, sorted by name, without zero amounts.
    pub(crate) fn extended_entries(&self) -> &[(ExtendedName, u64)] {
        self.extended.as_slice()
    }

    /// Every resource named in either `self` or `other`, in [`iter`](Self::iter) order.
    pub(crate) fn names_with<'a>(
        &'a self,
        other: &'a Resources,
    ) -> impl Iterator<Item = ResourceName> + 'a {
        let mut ext: Vec<&ExtendedName> = self
            .extended
            .as_slice()
            .iter()
            .chain(other.extended.as_slice())
            .map(|(n, _)| n)
            .collect();
        ext.sort();
        ext.dedup();
        [
            ResourceName::Cpu,
            ResourceName::Memory,
            ResourceName::Storage,
        ]
        .into_iter()
        .chain(ext.into_iter().map(|n| ResourceName::Extended(n.clone())))
    }

    /// Whether `self` fits within `capacity`: every amount is at most the capacity's.
    pub fn fits(&self, capacity: &Resources) -> bool {
        self.cpu <= capacity.cpu
            && self.memory <= capacity.memory
            && self.storage <= capacity.storage
            && self
                .extended
                .as_slice()
                .iter()
                .all(|(n, v)| *v <= capacity.extended_amount(n.as_str()))
    }

    /// The first resource (in [`iter`](Self::iter) order) where `self` exceeds
    /// `capacity`, with the two amounts.
    pub fn first_shortfall(&self, capacity: &Resources) -> Option<(ResourceName, u64, u64)> {
        self.iter().find_map(|(name, need)| {
            let cap = capacity.get(&name);
            (need > cap).then_some((name, need, cap))
        })
    }

    /// `self + other`, or [`ResourceError::Overflow`] naming the resource.
    pub fn checked_add(&self, other: &Resources) -> Result<Resources, ResourceError> {
        self.zip(other, |name, a, b| {
            a.checked_add(b).ok_or_else(|| ResourceError::Overflow {
                resource: name.to_string(),
            })
        })
    }

    /// `self - other`, or [`ResourceError::Underflow`] naming the resource.
    pub fn checked_sub(&self, other: &Resources) -> Result<Resources, ResourceError> {
        self.zip(other, |name, a, b| {
            a.checked_sub(b).ok_or_else(|| ResourceError::Underflow {
                resource: name.to_string(),
                have: a,
                take: b,
            })
        })
    }

    /// `self - other`, flooring each amount at zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        self.zip_infallible(other, u64::saturating_sub)
    }

    /// `self + other`, capping each amount at `u64::MAX`.
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        self.zip_infallible(other, u64::saturating_add)
    }

    /// The larger of each amount.
    pub fn max(&self, other: &Resources) -> Resources {
        self.zip_infallible(other, u64::max)
    }

    /// The smaller of each amount.
    pub fn min(&self, other: &Resources) -> Resources {
        self.zip_infallible(other, u64::min)
    }

    fn zip_infallible(&self, other: &Resources, f: impl Fn(u64, u64) -> u64) -> Resources {
        match self.zip(other, |_, a, b| {
            Ok::<u64, std::convert::Infallible>(f(a, b))
        }) {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    fn zip<E>(
        &self,
        other: &Resources,
        f: impl Fn(&ResourceName, u64, u64) -> Result<u64, E>,
    ) -> Result<Resources, E> {
        let mut out = Resources::new();
        for name in self.names_with(other) {
            let v = f(&name, self.get(&name), other.get(&name))?;
            out.set(&name, v);
        }
        Ok(out)
    }

    /// The largest share of `capacity` that `self` takes in any one resource, and which
    /// resource that is (the "dominant share" of dominant resource fairness). Resources
    /// with zero capacity are ignored.
    pub fn dominant_share(&self, capacity: &Resources) -> Option<(ResourceName, f64)> {
        self.iter()
            .filter_map(|(name, v)| {
                let cap = capacity.get(&name);
                (cap > 0).then(|| (name, v as f64 / cap as f64))
            })
            .fold(
                None,
                |best: Option<(ResourceName, f64)>, (n, s)| match best {
                    Some((_, b)) if b >= s => best,
                    _ => Some((n, s)),
                },
            )
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resources({self})")
    }
}

impl fmt::Display for Resources {
    /// `cpu=500m,memory=2Gi,gpu=1`; zero amounts are left out and no resources at all
    /// print as `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, v) in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{name}={}", name.format_amount(v))?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl FromStr for Resources {
    type Err = ResourceError;

    /// Parses `name=amount` entries separated by commas (spaces allowed); `none` or an
    /// empty string is no resources.
    fn from_str(s: &str) -> Result<Self, ResourceError> {
        let t = s.trim();
        if t.is_empty() || t == "none" {
            return Ok(Resources::new());
        }
        let mut entries = Vec::new();
        for entry in t.split(',') {
            let (name, value) = entry
                .split_once('=')
                .ok_or_else(|| ResourceError::Malformed {
                    entry: excerpt(entry.trim()),
                })?;
            let name = ResourceName::new(name)?;
            let v = name.parse_amount(value)?;
            entries.push((name, v));
        }
        Resources::from_entries(entries)
    }
}

impl Resources {
    /// The resources of `entries`, refused if a name comes twice. Sorted once, so a
    /// list of many names costs n log n, where checking each against those before
    /// it and inserting it in order cost n²: a list of 20,000 extended names took
    /// seconds to read.
    fn from_entries(mut entries: Vec<(ResourceName, u64)>) -> Result<Resources, ResourceError> {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(ResourceError::Duplicate {
                resource: w[0].0.to_string(),
            });
        }
        let mut out = Resources::new();
        // In order, each extended name lands at the end of the list.
        for (name, v) in &entries {
            out.set(name, *v);
        }
        Ok(out)
    }
}

impl Serialize for Resources {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.iter().count();
        let mut map = s.serialize_map(Some(n))?;
        for (name, v) in self.iter() {
            map.serialize_entry(name.as_str(), &name.format_amount(v))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Resources {
    /// Accepts a map of names to amounts (strings such as `"2Gi"`, or numbers read as
    /// if written as text, so `{"cpu": 2}` is two cores), or one string in the
    /// `cpu=2,memory=4Gi` form.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ResourcesVisitor)
    }
}

struct ResourcesVisitor;

impl<'de> Visitor<'de> for ResourcesVisitor {
    type Value = Resources;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of resource names to amounts, or a string like \"cpu=2,memory=4Gi\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Resources, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Resources, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let name = ResourceName::new(&key).map_err(de::Error::custom)?;
            let text = map.next_value::<AmountText>()?.0;
            let v = name.parse_amount(&text).map_err(de::Error::custom)?;
            entries.push((name, v));
        }
        Resources::from_entries(entries).map_err(de::Error::custom)
    }
}

/// An amount as text, whether the document wrote a string or a number.
struct AmountText(String);

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AmountText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount such as \"2Gi\" or 4")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AmountText, E> {
                Ok(AmountText(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AmountText, E> {
                Ok(AmountText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AmountText, E> {
                Ok(AmountText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<AmountText, E> {
                if v.is_finite() && v.fract() == 0.0 {
                    // A whole number past `u64` (or written with an exponent) comes as
                    // a float: its exact digits, as the document wrote them for
                    // 18446744073709551616 or 1e19, where the shortest float text
                    // would read 18446744073709552000.
                    Ok(AmountText(format!("{v:.0}")))
                } else if v.is_finite() {
                    Ok(AmountText(v.to_string()))
                } else {
                    Err(E::custom(format_args!("amount {v} is not a number")))
                }
            }
        }
        d.deserialize_any(V)
    }
}
