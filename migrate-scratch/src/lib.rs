//! Scratch PostgreSQL clusters.
