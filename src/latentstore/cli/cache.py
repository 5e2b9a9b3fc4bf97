"""``latentstore cache list|clear``: the local cache of remote stores (:mod:`latentstore.store.transfer`)."""

from latentstore.inspection.info import format_bytes
from latentstore.store import transfer

COMMAND_HELP = "List or clear the local cache of remote stores opened with latentstore.open(url)."


def configure(parser) -> None:
    parser.add_argument("action", choices=("list", "clear"))
    parser.add_argument("url", nargs="?", default=None, help="clear: only the copies of this store")
    parser.add_argument("--cache-dir", default=None, help=f"the cache (default ${transfer.CACHE_ENV} or ~/.cache/latentstore)")


def run(args) -> int:
    if args.action == "clear":
        freed = transfer.clear_cache(args.cache_dir, args.url)
        print(f"freed {format_bytes(freed)} in {transfer.cache_root(args.cache_dir)}")
        return 0
    entries = transfer.cache_entries(args.cache_dir)
    for entry in entries:
        state = "" if entry["complete"] else "  (incomplete fetch)"
        print(f"{entry['key']}  {format_bytes(entry['bytes']):>9}  {entry['url']}{state}")
    total = sum(e["bytes"] for e in entries)
    print(f"{len(entries)} cached stores, {format_bytes(total)} in {transfer.cache_root(args.cache_dir)}")
    return 0
