/*
 * h5attr.c -- scalar HDF5 attributes (h5attr.h).
 */
#include "h5attr.h"

#include <string.h>

int h5attr_put_u64(hid_t loc, const char *name, uint64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a =
        H5Acreate2(loc, name, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_UINT64, &v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

int h5attr_put_str(hid_t loc, const char *name, const char *v, size_t len)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len + 1);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, t, v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return ok ? 0 : -1;
}

int h5attr_get_u64(hid_t loc, const char *name, uint64_t *v)
{
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t sp = H5Aget_space(a);
    int ok = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 &&
             H5Aread(a, H5T_NATIVE_UINT64, v) >= 0;
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return ok ? 0 : -1;
}

long h5attr_get_str(hid_t loc, const char *name, char *buf, size_t cap)
{
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    size_t size = t >= 0 ? H5Tget_size(t) : 0;
    int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == H5T_STRING &&
             !H5Tis_variable_str(t) && H5Sget_simple_extent_npoints(sp) == 1 &&
             size > 0 && size < cap;
    hid_t mt = ok ? H5Tcopy(H5T_C_S1) : -1;
    if (ok) {
        H5Tset_size(mt, size + 1);
        H5Tset_cset(mt, H5Tget_cset(t));
        memset(buf, 0, size + 1);
        ok = H5Aread(a, mt, buf) >= 0;
    }
    if (mt >= 0) H5Tclose(mt);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return ok ? (long)strnlen(buf, size) : -1;
}
