/*
 * vec.h - growing arrays.
 */
#ifndef MOAT_CORE_VEC_H
#define MOAT_CORE_VEC_H

#include <stdbool.h>
#include <stdlib.h>

/*
 * Makes the array *v (of *cap elements of elem bytes) hold at least need
 * elements, doubling from 16. Returns false, leaving *v and *cap as they
 * were, if memory runs out.
 */
static inline bool moat_grow(void **v, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 16;
	void *nv;

	if (need <= *cap)
		return true;
	while (ncap < need)
		ncap *= 2;
	nv = realloc(*v, ncap * elem);
	if (!nv)
		return false;
	*v = nv;
	*cap = ncap;
	return true;
}

#endif
