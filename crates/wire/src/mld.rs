//! TODO: mld (being written)
