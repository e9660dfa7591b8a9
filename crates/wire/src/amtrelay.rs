//! TODO: amtrelay (being written)
