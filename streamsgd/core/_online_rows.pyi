# A compiled module with no Python entry points: the cdef functions of _online_rows.pxd.
