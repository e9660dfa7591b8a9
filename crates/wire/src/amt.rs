//! TODO: amt (being written)
