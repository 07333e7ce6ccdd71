/*
 * h5attr.h -- scalar HDF5 attributes: the one set of helpers that the
 * snapshot writer and reader (snapshot.c) and the payload columns
 * (snapshot_payload.c) share. Every function returns -1 on any HDF5 error
 * and leaves no HDF5 object open.
 */
#ifndef NPVDB_STORAGE_H5ATTR_H
#define NPVDB_STORAGE_H5ATTR_H

#include <hdf5.h>

#include <stddef.h>
#include <stdint.h>

/* A little-endian u64 attribute; 0 on success. */
int h5attr_put_u64(hid_t loc, const char *name, uint64_t v);
/* A fixed-length UTF-8 string attribute of v[0..len); 0 on success. */
int h5attr_put_str(hid_t loc, const char *name, const char *v, size_t len);
/* Reads a scalar u64 attribute; 0 on success, -1 if missing or not one. */
int h5attr_get_u64(hid_t loc, const char *name, uint64_t *v);
/* Reads a fixed-length string attribute of at most cap-1 bytes into buf
 * (NUL-terminated); its length, or -1 if missing, not a string or too
 * long. */
long h5attr_get_str(hid_t loc, const char *name, char *buf, size_t cap);

#endif /* NPVDB_STORAGE_H5ATTR_H */
