-- Builds a local corpus in the CodeParrot schema from the Python source
-- installed on this machine (tide.data.build_corpus): one JSON Lines record
-- per .py file, {"repo_name", "path", "copies", "size", "content",
-- "license"}, gzip-compressed, as the seeds' codeparrot data; no download.
--
--   tide recipes/build_corpus.lua [--out=data/corpus/python.jsonl.gz]
--        [--roots=DIR,DIR...] [--max_mb=N] [--quiet]
--
-- The roots default to every /usr/lib/python3.* and /usr/lib/python3/
-- dist-packages present (installing python3-pandas, python3-sklearn,
-- python3-matplotlib and python3-seaborn gives the seeds' data-science
-- filter real matches). Files are taken in sorted order, so the same
-- machine gives the same corpus; --max_mb stops after that many MB of source.
local args = tide.args
local roots
if args.roots then
  roots = {}
  for r in tostring(args.roots):gmatch('[^,]+') do roots[#roots + 1] = r end
end
local t0 = tide.clock()
local r = tide.data.build_corpus({ out = args.out, roots = roots, max_mb = args.max_mb })
if not args.quiet then
  print(('build_corpus: %d files, %.1f MB of Python source from %s -> %s (%.1f s)%s'):format(
    r.files, r.bytes / 1e6, table.concat(r.roots, ', '), r.path, tide.clock() - t0,
    r.skipped > 0 and (' (%d binary or non-UTF-8 files skipped)'):format(r.skipped) or ''))
end
