/*
 * snapshot.h -- one collection as one HDF5 file that h5py opens as numpy
 * arrays:
 *   /centroids      n_shards x dim float32 (0 x dim while untrained)
 *   /vectors        N x dim float32, grouped by shard (stored vectors:
 *                   normalised ones for cosine)
 *   /keys           N variable-length UTF-8 strings, same order
 *   /shard_offsets  n_shards+1 uint64: shard s is rows [off[s], off[s+1])
 * and attributes on the root group: format_version (1), metric (string),
 * dim, n_shards, trained, n_vectors, sequence (last log record covered),
 * the creation config (config_n_shards, train_per_shard, kmeans_iters,
 * default_nprobe, seed) and crc32c_<dataset> for each dataset: CRC32C of the
 * dataset's values in row order (keys: each key's bytes and a NUL). A file
 * whose checksums, shapes or offsets do not agree is refused.
 */
#ifndef NPVDB_STORAGE_SNAPSHOT_H
#define NPVDB_STORAGE_SNAPSHOT_H

#include "npvdb.h"
#include "storage.h"

#include <stdint.h>

#define SNAP_FORMAT_VERSION 1

/* Writes c to `tmp_path` and makes it durable (H5Fflush, fsync). The
 * caller renames it into place. cfg is the collection's creation config
 * (dim and metric are taken from c). Fills info's vectors and bytes. */
npvdb_code snap_write(const char *tmp_path, npvdb_collection *c,
                      const npvdb_config *cfg, uint64_t seq,
                      npvdb_snapshot_info *info, npvdb_error *err);

/* Reads and verifies a snapshot. On success *out is a new collection (caller
 * frees) built with n_workers, *seq the sequence it covers and *cfg its
 * config. On any mismatch nothing is returned: a half-read collection is
 * freed, never handed out. */
npvdb_code snap_read(const char *path, uint32_t n_workers,
                     npvdb_collection **out, uint64_t *seq, npvdb_config *cfg,
                     npvdb_error *err);

#endif /* NPVDB_STORAGE_SNAPSHOT_H */
