/*
 * snapshot.h -- every collection of the server as one HDF5 file that h5py
 * opens as numpy arrays.
 *
 * Format version 2:
 *   / attributes: format_version (2), sequence (last log record covered),
 *     n_collections, n_vectors (over all collections)
 *   /collections/<name>/  one group per collection (the name "." is stored
 *     as the group "%2E": HDF5 reserves "."; the group's `name` attribute is
 *     the collection's name either way), holding what version 1 held at the
 *     root:
 *     centroids      n_shards x dim float32 (0 x dim while untrained)
 *     vectors        N x dim float32, grouped by shard (stored vectors:
 *                    normalised ones for cosine)
 *     keys           N variable-length UTF-8 strings, same order
 *     shard_offsets  n_shards+1 uint64: shard s is rows [off[s], off[s+1])
 *     attributes: name, metric (string), metric_id, dim, n_shards, trained,
 *     n_vectors, the creation config (config_n_shards, train_per_shard,
 *     kmeans_iters, default_nprobe, seed), n_payload_columns and
 *     crc32c_<dataset> for each dataset: CRC32C of the dataset's values in
 *     row order (keys: each key's bytes and a NUL)
 *     payload/<i>/   (i = 0 .. n_payload_columns-1; no payload group when
 *       no row has a payload) one column per field and value type:
 *       attributes field (the field name), type ("string", "int", "double",
 *       "bool", "strings"; "string_bytes" / "strings_bytes" for a column
 *       whose strings hold a NUL byte, which HDF5 strings cannot), n (rows
 *       that have it), crc32c; datasets
 *       rows    n uint64, strictly ascending: the rows (indexes into
 *               keys/vectors) holding this field with this type; rows not
 *               listed lack it
 *       values  string: n variable-length UTF-8 strings; int: n int64;
 *               double: n float64; bool: n uint8 (0/1); strings: the items
 *               of every row's list, flat, variable-length UTF-8, with
 *               *_bytes: variable-length uint8 sequences instead of strings
 *       offsets (strings only) n+1 uint64: row rows[j]'s list is
 *               values[offsets[j]:offsets[j+1]]
 *       In h5py: `dict(zip(col["rows"][:], col["values"][:]))`.
 *       crc32c: CRC32C of rows (uint64 LE), then for int/double/bool the
 *       values as 64-bit LE words (bools 0/1), for strings each string's
 *       bytes and a NUL, then (strings) the offsets (uint64 LE).
 *     Restore rebuilds each row's canonical payload blob from the columns
 *     (npvdb_payload_build sorts the fields, so the bytes are exactly the
 *     ones stored) and restores without re-training.
 * String attributes are fixed-length UTF-8 (h5py returns them as bytes).
 * Version 1 (one collection at the root, the attributes above without name
 * and payloads) is still read, as collection "default".
 *
 * A file whose checksums, shapes, offsets or names do not agree is refused
 * whole: a half-read file hands out nothing.
 */
#ifndef NPVDB_STORAGE_SNAPSHOT_H
#define NPVDB_STORAGE_SNAPSHOT_H

#include "npvdb.h"
#include "storage.h"

#include <stdint.h>

#define SNAP_FORMAT_VERSION 2

typedef struct snap_writer snap_writer;

/* Creates tmp_path for a snapshot covering log record seq. */
npvdb_code snap_begin(const char *tmp_path, uint64_t seq, snap_writer **out,
                      npvdb_error *err);
/* Writes one collection's group. cfg is its creation config (dim and metric
 * are taken from c). Holds no HDF5 object open after it returns. */
npvdb_code snap_add(snap_writer *w, const char *name, npvdb_collection *c,
                    const npvdb_config *cfg, npvdb_error *err);
/* Writes the root attributes and makes the file durable (H5Fflush, close,
 * fsync); fills info's vectors, bytes and collections. Frees w. The caller
 * renames the file into place. */
npvdb_code snap_finish(snap_writer *w, npvdb_snapshot_info *info,
                       npvdb_error *err);
/* Discards a snapshot being written (the caller unlinks the file). */
void snap_abort(snap_writer *w);

/* Receives each collection read; takes ownership of c (even on error). A
 * non-OK return stops the read with that error. */
typedef npvdb_code (*snap_coll_fn)(void *ctx, const char *name,
                                   npvdb_collection *c, const npvdb_config *cfg,
                                   npvdb_error *err);

/* Reads and verifies a snapshot, calling fn once per collection (in name
 * order for version 2), each built with n_workers or workers. *seq gets
 * the sequence it covers. On any error after some collections went to fn
 * the caller must discard them: the file is refused whole. */
npvdb_code snap_read(const char *path, uint32_t n_workers,
                     npvdb_workers *workers, snap_coll_fn fn, void *ctx,
                     uint64_t *seq, npvdb_error *err);

#endif /* NPVDB_STORAGE_SNAPSHOT_H */
