//! The parts of `etcdbrctl` that parse input on their own, as a library so that the fuzz targets
//! and tests reach them: the server's `--config-file`.

pub mod config_file;
