//! A statement or portal name as one thin pointer (see [`super`] for what
//! it saves).

/// A name, empty for the unnamed statement or portal: `None` then, and a
/// thin pointer otherwise, so the tracker's reply-queue entries stay at 16
/// bytes; named statements and portals are rare.
#[derive(Debug)]
#[expect(
    clippy::box_collection,
    reason = "a thin pointer keeps `Expected` at 16 bytes; named ones are rare"
)]
pub(crate) struct BoxedName(Option<Box<Vec<u8>>>);

impl BoxedName {
    pub(crate) const UNNAMED: BoxedName = BoxedName(None);

    #[inline]
    pub(crate) fn of(name: &[u8]) -> Self {
        BoxedName((!name.is_empty()).then(|| Box::new(name.to_vec())))
    }

    /// The name; empty for the unnamed statement or portal.
    pub(crate) fn name(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}
