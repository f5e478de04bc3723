// SPDX-License-Identifier: MIT
/*
 * The parts of the seeded keep-mask that are not in a hot loop (prng.h):
 * the threshold of a drop rate and the key of a tensor.
 */
#include "common/prng.h"

#include <math.h>

#include "common/util.h"

uint64_t udfs_seeded_threshold(double rate)
{
	if (!(rate > 0.0))
		rate = 0.0;
	if (rate > 1.0)
		rate = 1.0;
	/* The only floating-point step; exact IEEE arithmetic, so the same
	 * threshold on every machine. */
	return (uint64_t)llround((1.0 - rate) * 9007199254740992.0);
}

uint64_t udfs_seeded_key(uint64_t model_seed, const char *tensor_name)
{
	return udfs_mix64(model_seed ^ udfs_hash_str(tensor_name));
}
