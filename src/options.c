/* options - the defaults of fb_options and fb_image_opts (fastblocks.h). */
#include <string.h>

#include "fastblocks.h"

void fb_image_opts_init(fb_image_opts *o)
{
    memset(o, 0, sizeof *o);
    o->quality = 80; /* Pillow's WebP defaults, so sizes compare with the original */
    o->effort = 4;
    o->webp_passthrough = 1;
    o->max_input_bytes = 50u << 20;
    o->max_pixels = 100000000u;
    o->max_frames = 1000;
}

void fb_options_init(fb_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_block_size = 1ull << 30;
    o->durability = FB_DURABILITY_ALWAYS;
    o->batch_interval_ms = 10;
    o->compression_level = 3;
    o->compression_min_saving = 0.02;
    o->cache_bytes = 64u << 20;
    o->create = 1;
    fb_image_opts_init(&o->image);
}
