//! Tests of the pixl services together (in `tests/`); this library is empty. It is a crate
//! of its own so that no service crate depends on another, not even for its tests.
