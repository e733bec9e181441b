/*
 * Unit tests of the HTTP service's pure parts (src/http): routing, Range,
 * If-None-Match, bearer tokens, query options, --listen, dates, the status
 * table, multipart, the access-log line and the metrics exposition.
 *
 * The service's sources are built into the fastblocks binary, not the
 * library, so the MHD-free ones are compiled into this test directly.
 */
#include "fb_test.h"

#include "http/accesslog.c"
#include "http/metrics.c"
#include "http/multipart.c"
#include "http/parse.c"

#define ID "0000010000000040deadbeef"

TEST(route_fixed_paths)
{
    fb__http_path p;
    CHECK_EQ(fb__http_route_path("/healthz", &p), FB_ROUTE_HEALTHZ);
    CHECK_EQ(fb__http_route_path("/metrics", &p), FB_ROUTE_METRICS);
    CHECK_EQ(fb__http_route_path("/upload/", &p), FB_ROUTE_UPLOAD);
    CHECK_EQ(fb__http_route_path("/upload", &p), FB_ROUTE_UPLOAD);
    CHECK_EQ(fb__http_route_path("/images", &p), FB_ROUTE_IMAGES);
    CHECK_EQ(fb__http_route_path("/images/", &p), FB_ROUTE_IMAGES);
    CHECK_EQ(fb__http_route_path("/", &p), FB_ROUTE_NONE);
    CHECK_EQ(fb__http_route_path("/healthz/", &p), FB_ROUTE_NONE);
    CHECK_EQ(fb__http_route_path("/imagesX/1", &p), FB_ROUTE_NONE);
    CHECK_EQ(fb__http_route_path("", &p), FB_ROUTE_NONE);
}

TEST(route_ids)
{
    fb__http_path p;
    CHECK_EQ(fb__http_route_path("/images/" ID, &p), FB_ROUTE_IMAGE_ID);
    CHECK_OK(p.addr_rc);
    CHECK_EQ(p.addr.by_id, 1);
    CHECK_U64_EQ(p.addr.key, 0x0000010000000040ull);
    CHECK_U64_EQ(p.addr.cookie, 0xdeadbeefu);
    CHECK_EQ(fb__http_route_path("/images/" ID "/", &p), FB_ROUTE_IMAGE_ID);
    CHECK_OK(p.addr_rc);
    CHECK_EQ(fb__http_route_path("/images/" ID "/meta", &p), FB_ROUTE_IMAGE_META);
    CHECK_OK(p.addr_rc);
    /* Upper case, short, long, non-hex: routed, but a bad address. */
    CHECK_EQ(fb__http_route_path("/images/0000010000000040DEADBEEF", &p), FB_ROUTE_IMAGE_ID);
    CHECK_RC(p.addr_rc, FB_EINVAL);
    CHECK_EQ(fb__http_route_path("/images/abc", &p), FB_ROUTE_IMAGE_ID);
    CHECK_RC(p.addr_rc, FB_EINVAL);
    CHECK_EQ(fb__http_route_path("/images/" ID "0", &p), FB_ROUTE_IMAGE_ID);
    CHECK_RC(p.addr_rc, FB_EINVAL);
    CHECK_EQ(fb__http_route_path("/images/..", &p), FB_ROUTE_IMAGE_ID);
    CHECK_RC(p.addr_rc, FB_EINVAL);
    CHECK_EQ(fb__http_route_path("/images/" ID "/other", &p), FB_ROUTE_NONE);
}

TEST(route_triples)
{
    fb__http_path p;
    CHECK_EQ(fb__http_route_path("/images/block_00000001.fbk/64/1000", &p), FB_ROUTE_IMAGE_TRIPLE);
    CHECK_OK(p.addr_rc);
    CHECK_EQ(p.addr.by_id, 0);
    CHECK_U64_EQ(p.addr.size, 1000);
    /* Traversal and foreign names never become a path. */
    const char *bad[] = {
        "/images/../64/1000",
        "/images/block_1.bin/64/1000",
        "/images/..%2f..%2fetc/64/10",
        "/images/block_00000001.fbk/-1/1000",
        "/images/block_00000001.fbk/+64/1000",
        "/images/block_00000001.fbk/64/99999999999999999999999",
        "/images/block_00000001.fbk/18446744073709551616/1",
        "/images/block_00000001.fbk/6 4/1000",
        "/images/block_00000001.fbk/0x40/1000",
        "/images/block_0000001.fbk/64/1000",
        "/images/block_00000001.fbk\n/64/1000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(fb__http_route_path(bad[i], &p), FB_ROUTE_IMAGE_TRIPLE);
        CHECK_RC(p.addr_rc, FB_EINVAL);
    }
    /* Empty segments and too many segments are not routes. */
    CHECK_EQ(fb__http_route_path("/images/a//b", &p), FB_ROUTE_IMAGE_ID);
    CHECK_RC(p.addr_rc, FB_EINVAL);
    CHECK_EQ(fb__http_route_path("/images/a/b/c/d", &p), FB_ROUTE_IMAGE_ID);
    CHECK_RC(p.addr_rc, FB_EINVAL);
}

TEST(parse_u64_strict)
{
    uint64_t v;
    CHECK_OK(fb__http_parse_u64("0", 1, &v));
    CHECK_U64_EQ(v, 0);
    CHECK_OK(fb__http_parse_u64("18446744073709551615", 20, &v));
    CHECK_U64_EQ(v, UINT64_MAX);
    CHECK_RC(fb__http_parse_u64("18446744073709551616", 20, &v), FB_EINVAL);
    CHECK_RC(fb__http_parse_u64("", 0, &v), FB_EINVAL);
    CHECK_RC(fb__http_parse_u64("-1", 2, &v), FB_EINVAL);
    CHECK_RC(fb__http_parse_u64("+1", 2, &v), FB_EINVAL);
    CHECK_RC(fb__http_parse_u64(" 1", 2, &v), FB_EINVAL);
}

TEST(range_forms)
{
    uint64_t a = 7, b = 7;
    CHECK_EQ(fb__http_parse_range(NULL, 100, &a, &b), FB_RANGE_FULL);
    CHECK_EQ(fb__http_parse_range("bytes=0-9", 100, &a, &b), FB_RANGE_PARTIAL);
    CHECK_U64_EQ(a, 0);
    CHECK_U64_EQ(b, 9);
    CHECK_EQ(fb__http_parse_range("bytes=90-", 100, &a, &b), FB_RANGE_PARTIAL);
    CHECK_U64_EQ(a, 90);
    CHECK_U64_EQ(b, 99);
    CHECK_EQ(fb__http_parse_range("bytes=-10", 100, &a, &b), FB_RANGE_PARTIAL);
    CHECK_U64_EQ(a, 90);
    CHECK_U64_EQ(b, 99);
    CHECK_EQ(fb__http_parse_range("bytes=-1000", 100, &a, &b), FB_RANGE_PARTIAL);
    CHECK_U64_EQ(a, 0);
    CHECK_EQ(fb__http_parse_range("bytes=50-1000", 100, &a, &b), FB_RANGE_PARTIAL);
    CHECK_U64_EQ(b, 99);
    CHECK_EQ(fb__http_parse_range(" Bytes = 1-2 ", 100, &a, &b), FB_RANGE_PARTIAL);
    CHECK_U64_EQ(a, 1);
    CHECK_U64_EQ(b, 2);
    CHECK_EQ(fb__http_parse_range("bytes=99999999999999999999999-", 100, &a, &b),
             FB_RANGE_UNSATISFIABLE);
    CHECK_EQ(fb__http_parse_range("bytes=100-", 100, &a, &b), FB_RANGE_UNSATISFIABLE);
    CHECK_EQ(fb__http_parse_range("bytes=-0", 100, &a, &b), FB_RANGE_UNSATISFIABLE);
    CHECK_EQ(fb__http_parse_range("bytes=0-0", 0, &a, &b), FB_RANGE_UNSATISFIABLE);
    CHECK_EQ(fb__http_parse_range("bytes=0-1,5-6", 100, &a, &b), FB_RANGE_FULL);
    CHECK_EQ(fb__http_parse_range("items=0-1", 100, &a, &b), FB_RANGE_FULL);
    CHECK_EQ(fb__http_parse_range("bytes=5-1", 100, &a, &b), FB_RANGE_INVALID);
    CHECK_EQ(fb__http_parse_range("bytes=abc", 100, &a, &b), FB_RANGE_INVALID);
    CHECK_EQ(fb__http_parse_range("bytes=-", 100, &a, &b), FB_RANGE_INVALID);
    CHECK_EQ(fb__http_parse_range("bytes 0-1", 100, &a, &b), FB_RANGE_INVALID);
    CHECK_EQ(fb__http_parse_range("bytes=1-2x", 100, &a, &b), FB_RANGE_INVALID);
    CHECK_EQ(fb__http_parse_range("bytes=1 - 2", 100, &a, &b), FB_RANGE_INVALID);
}

TEST(etag_match)
{
    CHECK_EQ(fb__http_etag_match("\"" ID "\"", ID), 1);
    CHECK_EQ(fb__http_etag_match("W/\"" ID "\"", ID), 1);
    CHECK_EQ(fb__http_etag_match("\"x\", \"" ID "\"", ID), 1);
    CHECK_EQ(fb__http_etag_match(" * ", ID), 1);
    CHECK_EQ(fb__http_etag_match("\"x\"", ID), 0);
    CHECK_EQ(fb__http_etag_match(ID, ID), 0); /* unquoted is malformed */
    CHECK_EQ(fb__http_etag_match("\"" ID, ID), 0);
    CHECK_EQ(fb__http_etag_match("junk, \"" ID "\"", ID), 0);
    CHECK_EQ(fb__http_etag_match(NULL, ID), 0);
    CHECK_EQ(fb__http_etag_match("", ID), 0);
}

TEST(bearer)
{
    CHECK_EQ(fb__http_bearer_ok("Bearer s3cret", "s3cret", 6), 1);
    CHECK_EQ(fb__http_bearer_ok("bearer   s3cret  ", "s3cret", 6), 1);
    CHECK_EQ(fb__http_bearer_ok("Bearer s3cre", "s3cret", 6), 0);
    CHECK_EQ(fb__http_bearer_ok("Bearer s3cretX", "s3cret", 6), 0);
    CHECK_EQ(fb__http_bearer_ok("Bearer S3cret", "s3cret", 6), 0);
    CHECK_EQ(fb__http_bearer_ok("Basic s3cret", "s3cret", 6), 0);
    CHECK_EQ(fb__http_bearer_ok("Bearers3cret", "s3cret", 6), 0);
    CHECK_EQ(fb__http_bearer_ok("Bearer ", "s3cret", 6), 0);
    CHECK_EQ(fb__http_bearer_ok(NULL, "s3cret", 6), 0);
}

TEST(query_options)
{
    int64_t v;
    int b;
    CHECK_OK(fb__http_parse_int_opt("quality", "75", 0, 100, &v));
    CHECK_EQ(v, 75);
    CHECK_RC(fb__http_parse_int_opt("quality", "101", 0, 100, &v), FB_EINVAL);
    CHECK(strstr(fb_last_error(), "quality") != NULL);
    CHECK_RC(fb__http_parse_int_opt("quality", "-1", 0, 100, &v), FB_EINVAL);
    CHECK_RC(fb__http_parse_int_opt("quality", "", 0, 100, &v), FB_EINVAL);
    CHECK_RC(fb__http_parse_int_opt("quality", NULL, 0, 100, &v), FB_EINVAL);
    CHECK_OK(fb__http_parse_bool_opt("lossless", NULL, &b));
    CHECK_EQ(b, 1);
    CHECK_OK(fb__http_parse_bool_opt("lossless", "FALSE", &b));
    CHECK_EQ(b, 0);
    CHECK_RC(fb__http_parse_bool_opt("lossless", "maybe", &b), FB_EINVAL);
}

TEST(listen_addresses)
{
    fb__http_listen l;
    CHECK_OK(fb__http_parse_listen("127.0.0.1:8000", &l));
    CHECK_STR_EQ(l.host, "127.0.0.1");
    CHECK_EQ(l.port, 8000);
    CHECK_EQ(l.is_unix, 0);
    CHECK_OK(fb__http_parse_listen("[::1]:0", &l));
    CHECK_STR_EQ(l.host, "::1");
    CHECK_EQ(l.port, 0);
    CHECK_OK(fb__http_parse_listen("unix:/tmp/fb.sock", &l));
    CHECK_EQ(l.is_unix, 1);
    CHECK_STR_EQ(l.path, "/tmp/fb.sock");
    CHECK_RC(fb__http_parse_listen("127.0.0.1", &l), FB_EINVAL);
    CHECK_RC(fb__http_parse_listen("127.0.0.1:65536", &l), FB_EINVAL);
    CHECK_RC(fb__http_parse_listen(":80", &l), FB_EINVAL);
    CHECK_RC(fb__http_parse_listen("::1:80", &l), FB_EINVAL);
    CHECK_RC(fb__http_parse_listen("unix:", &l), FB_EINVAL);
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    memcpy(longpath, "unix:", 5);
    longpath[sizeof longpath - 1] = '\0';
    CHECK_RC(fb__http_parse_listen(longpath, &l), FB_EINVAL);
}

TEST(http_date)
{
    char d[FB_HTTP_DATE_LEN];
    fb__http_date(784111777, d);
    CHECK_STR_EQ(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    fb__http_date(0, d);
    CHECK_STR_EQ(d, "Thu, 01 Jan 1970 00:00:00 GMT");
}

TEST(status_table)
{
    CHECK_EQ(fb__http_status_for(FB_ENOTFOUND), 404);
    CHECK_EQ(fb__http_status_for(FB_EINVAL), 400);
    CHECK_EQ(fb__http_status_for(FB_EUNSUPPORTED), 415);
    CHECK_EQ(fb__http_status_for(FB_EIMAGE), 422);
    CHECK_EQ(fb__http_status_for(FB_ELIMIT), 413);
    CHECK_EQ(fb__http_status_for(FB_ENOSPC), 503);
    CHECK_EQ(fb__http_status_for(FB_EIO), 503);
    CHECK_EQ(fb__http_status_for(FB_ECORRUPT), 500);
    CHECK_EQ(fb__http_status_for(FB_EINTEGRITY), 500);
}

static const char form_ct[] = "multipart/form-data; boundary=XyZ";

TEST(multipart_finds_field)
{
    static const char body[] = "preamble\r\n--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"other\"\r\n\r\n"
                               "ignored\r\n--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"file\"; "
                               "filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
                               "\xff\xd8\r\n--Xy not yet\r\n--XyZ--\r\n";
    char boundary[FB_MULTIPART_BOUNDARY_MAX + 1];
    fb__multipart_part part;
    CHECK_EQ(fb__multipart_is_form(form_ct), 1);
    CHECK_EQ(fb__multipart_is_form("Multipart/Form-Data"), 1);
    CHECK_EQ(fb__multipart_is_form("multipart/form-datax"), 0);
    CHECK_EQ(fb__multipart_is_form("image/jpeg"), 0);
    CHECK_OK(fb__multipart_boundary(form_ct, boundary));
    CHECK_STR_EQ(boundary, "XyZ");
    CHECK_OK(fb__multipart_boundary("multipart/form-data; charset=x; boundary=\"a b\"", boundary));
    CHECK_STR_EQ(boundary, "a b");
    CHECK_OK(fb__multipart_find((const uint8_t *)body, sizeof body - 1, "XyZ", "file", &part));
    CHECK_EQ(part.len, 16);
    CHECK_MEM_EQ(part.data, "\xff\xd8\r\n--Xy not yet", 16);
    CHECK_STR_EQ(part.content_type, "image/jpeg");
}

TEST(multipart_rejects)
{
    char boundary[FB_MULTIPART_BOUNDARY_MAX + 1];
    fb__multipart_part part;
    CHECK_RC(fb__multipart_boundary("multipart/form-data", boundary), FB_EINVAL);
    CHECK_RC(fb__multipart_boundary("multipart/form-data; boundary=", boundary), FB_EINVAL);
    CHECK_RC(fb__multipart_boundary("multipart/form-data; boundary=\"abc", boundary), FB_EINVAL);
    CHECK_RC(fb__multipart_boundary("multipart/form-data; boundary=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                    boundary),
             FB_EINVAL);
    static const char nofield[] =
        "--XyZ\r\nContent-Disposition: form-data; name=\"files\"\r\n\r\nx\r\n--XyZ--\r\n";
    CHECK_RC(fb__multipart_find((const uint8_t *)nofield, sizeof nofield - 1, "XyZ", "file", &part),
             FB_EINVAL);
    CHECK(strstr(fb_last_error(), "no field named \"file\"") != NULL);
    static const char truncated[] =
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nimage bytes";
    CHECK_RC(
        fb__multipart_find((const uint8_t *)truncated, sizeof truncated - 1, "XyZ", "file", &part),
        FB_EINVAL);
    CHECK(strstr(fb_last_error(), "truncated") != NULL);
    static const char noheaders_end[] = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"";
    CHECK_RC(fb__multipart_find((const uint8_t *)noheaders_end, sizeof noheaders_end - 1, "XyZ",
                                "file", &part),
             FB_EINVAL);
    static const char noboundary[] = "just some bytes";
    CHECK_RC(fb__multipart_find((const uint8_t *)noboundary, sizeof noboundary - 1, "XyZ", "file",
                                &part),
             FB_EINVAL);
    static const char badheader[] = "--XyZ\r\nno colon here\r\n\r\nx\r\n--XyZ--";
    CHECK_RC(
        fb__multipart_find((const uint8_t *)badheader, sizeof badheader - 1, "XyZ", "file", &part),
        FB_EINVAL);
    CHECK_RC(fb__multipart_find((const uint8_t *)"", 0, "XyZ", "file", &part), FB_EINVAL);
}

TEST(accesslog_line)
{
    char line[FB_ACCESSLOG_LINE_MAX];
    size_t n = fb__accesslog_format(line, sizeof line, 784111777123, "127.0.0.1", "GET",
                                    "/images/x?a=\"b\"\n", "HTTP/1.1", 200, 5120, 412);
    CHECK_STR_EQ(line, "1994-11-06T08:49:37.123Z 127.0.0.1 \"GET /images/x?a=\\x22b\\x22\\x0a "
                       "HTTP/1.1\" 200 5120 0.412ms\n");
    CHECK_EQ(n, strlen(line));
    char longtarget[4000];
    memset(longtarget, 'a', sizeof longtarget - 1);
    longtarget[sizeof longtarget - 1] = '\0';
    n = fb__accesslog_format(line, sizeof line, 0, "::1", "GET", longtarget, "HTTP/1.1", 0, 0,
                             1500000);
    CHECK(n < sizeof line);
    CHECK_EQ(line[n - 1], '\n');
    CHECK(strstr(line, "...") != NULL);
    CHECK(strstr(line, " - 0 1500.000ms") != NULL);
    CHECK_EQ(strchr(line, '\n'), line + n - 1);
}

TEST(metrics_render)
{
    fb__http_metrics m;
    fb_stats st;
    char *text = NULL;
    size_t len = 0;
    fb__metrics_init(&m);
    memset(&st, 0, sizeof st);
    st.cache_hits = 42;
    st.live_records = 3;
    fb__metrics_request(&m, FB_ROUTE_IMAGE_ID, FB_METHOD_GET, 200, 1000, 300000);
    fb__metrics_request(&m, FB_ROUTE_IMAGE_ID, FB_METHOD_GET, 304, 0, 2000000);
    fb__metrics_request(&m, FB_ROUTE_NONE, FB_METHOD_OTHER, 599, 10, 1);
    fb__metrics_reject(&m, FB_REJECT_TOO_LARGE);
    CHECK_OK(fb__metrics_render(&m, &st, &text, &len));
    CHECK_EQ(strlen(text), len);
    CHECK(strstr(text, "fastblocks_http_requests_total{route=\"image_id\",method=\"GET\","
                       "status=\"200\"} 1\n") != NULL);
    CHECK(strstr(text, "status=\"304\"} 1\n") != NULL);
    CHECK(strstr(text, "route=\"none\",method=\"other\",status=\"other\"} 1\n") != NULL);
    CHECK(strstr(text, "fastblocks_http_response_bytes_total{route=\"image_id\"} 1000\n") != NULL);
    /* 0.3 ms lands in le=0.0005, 2 ms in le=0.0025: cumulative counts. */
    CHECK(strstr(text, "duration_seconds_bucket{route=\"image_id\",le=\"0.00025\"} 0\n") != NULL);
    CHECK(strstr(text, "duration_seconds_bucket{route=\"image_id\",le=\"0.0005\"} 1\n") != NULL);
    CHECK(strstr(text, "duration_seconds_bucket{route=\"image_id\",le=\"0.0025\"} 2\n") != NULL);
    CHECK(strstr(text, "duration_seconds_bucket{route=\"image_id\",le=\"+Inf\"} 2\n") != NULL);
    CHECK(strstr(text, "duration_seconds_count{route=\"image_id\"} 2\n") != NULL);
    CHECK(strstr(text, "fastblocks_uploads_rejected_total{reason=\"too_large\"} 1\n") != NULL);
    CHECK(strstr(text, "fastblocks_cache_hits_total 42\n") != NULL);
    CHECK(strstr(text, "fastblocks_store_live_records 3\n") != NULL);
    fb__free(text);
}

int main(void)
{
    RUN(route_fixed_paths);
    RUN(route_ids);
    RUN(route_triples);
    RUN(parse_u64_strict);
    RUN(range_forms);
    RUN(etag_match);
    RUN(bearer);
    RUN(query_options);
    RUN(listen_addresses);
    RUN(http_date);
    RUN(status_table);
    RUN(multipart_finds_field);
    RUN(multipart_rejects);
    RUN(accesslog_line);
    RUN(metrics_render);
    return TEST_REPORT();
}
