"""Value pools the demo warehouse draws from.

Plain data, no logic. Pools deliberately mix clean values with the ones real Segment data carries and
Amberflo does not accept as they are: ``/`` and ``|`` (``"Welcome | Initech"``, ``"/home"``), accents
(``é``), emoji, curly quotes and strings longer than 200 characters. ``None`` in a pool is a null.
"""

from __future__ import annotations

#: A string longer than Amberflo's 200-character limit, used to build the long values below.
_LONG_TAIL = "&utm_content=" + "-".join(f"variant{i:02d}" for i in range(24))

SITE = "https://segment.com"

#: (page name, path, title) of the web source's pages; weights in ``PAGE_WEIGHTS``.
PAGES: tuple[tuple[str | None, str, str], ...] = (
    ("Home", "/home", "Welcome | Initech"),
    ("Pricing", "/pricing", "Pricing | Initech"),
    ("Docs", "/docs/getting-started", "Getting Started | Initech Docs"),
    ("Docs", "/docs/api/meters", "Meters API | Initech Docs"),
    ("Blog", "/blog/usage-based-pricing", "Usage-based pricing, explained | Initech Blog"),
    ("Café", "/fr/café", "Café & Croissants | Initech"),
    ("Launch", "/launch-week", "🚀 Launch Week | Initech"),
    ("Checkout", "/checkout", "Checkout | Initech"),
    ("Login", "/login", "Log in | Initech"),
    ("Signup", "/signup", "Sign up — it's free | Initech"),
    ("Dashboard", "/app/dashboard", "Dashboard | Initech"),
    ("Billing", "/app/settings/billing", "Billing settings | Initech"),
    (None, "/careers", "Careers at Initech"),
)
PAGE_WEIGHTS = (20, 12, 8, 5, 5, 2, 3, 4, 10, 4, 18, 3, 1)

#: ``search`` (query string) values: mostly empty, as analytics.js sends them.
SEARCHES: tuple[str | None, ...] = (
    "",
    "?utm_source=google&utm_medium=cpc&utm_campaign=brand",
    "?q=schrute+farms",
    "?ref=producthunt",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=nov_digest" + _LONG_TAIL,
    None,
)
SEARCH_WEIGHTS = (80, 8, 4, 3, 1, 4)

REFERRERS: tuple[str | None, ...] = (
    "",
    "https://google.com/",
    "https://www.bing.com/",
    "https://news.ycombinator.com/item?id=41234567",
    "https://t.co/Xy7Qz9",
    "https://www.linkedin.com/feed/update/urn:li:activity:7123456789012345678/?utm_source=share"
    + _LONG_TAIL,
    None,
)
REFERRER_WEIGHTS = (40, 25, 5, 6, 6, 1, 3)

KEYWORDS: tuple[str | None, ...] = (
    "paper,comedy",
    "billing,metering",
    "usage-based pricing",
    "café,crème brûlée",
    "",
    None,
)
KEYWORD_WEIGHTS = (10, 15, 10, 3, 12, 50)

#: utm campaign context, only on some page views (so only ``pages`` has these columns).
CAMPAIGN_SOURCES = ("google", "newsletter", "producthunt")
CAMPAIGN_NAMES = ("brand", "nov_digest", "launch | week")

USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
)
LOCALES = ("en-US", "en-GB", "fr-FR", "de-DE", "es-ES", "ja-JP", "pt-BR")
LOCALE_WEIGHTS = (55, 10, 10, 8, 6, 6, 5)
TIMEZONES = ("America/Los_Angeles", "America/New_York", "Europe/London", "Europe/Paris", "Asia/Tokyo")

# --- track event properties ------------------------------------------------------------------------

REGIONS = ("us-west-2", "us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2")
REGION_WEIGHTS = (45, 25, 15, 10, 5)
ENDPOINTS: tuple[str | None, ...] = (
    "/v1/meters",
    "/v1/customers",
    "/v1/usage?group_by=day|customer",
    "/v1/invoices/latest",
    "/v1/search?q=" + "x" * 120 + _LONG_TAIL,
    None,
)
ENDPOINT_WEIGHTS = (50, 20, 15, 10, 1, 4)
STATUS_CODES = (200, 201, 204, 400, 401, 429, 500, 503)
STATUS_WEIGHTS = (70, 8, 4, 5, 3, 5, 3, 2)

CURRENCIES = ("USD", "EUR", "GBP", "JPY")
CURRENCY_WEIGHTS = (70, 18, 10, 2)
PRODUCTS = ("Paper Ream", "Stapler", "TPS Report Cover", "Red Swingline", "Crème Pens", "Desk Fan")
PRODUCT_SKUS = ("SKU-PAPER-500", "SKU-STAPLER", "SKU-TPS-COVER", "SKU-RED/SWINGLINE", "SKU-CRÈME", "SKU-FAN")
PRODUCT_PRICES = (8.99, 14.5, 3.25, 29.99, 6.0, 39.0)
COUPONS: tuple[str | None, ...] = (None, "WELCOME10", "BLACK/FRIDAY", "ÉTÉ2026", "")
COUPON_WEIGHTS = (75, 12, 6, 4, 3)

PLANS = ("free", "pro", "enterprise", "premium")
PLAN_WEIGHTS = (50, 30, 10, 10)
SIGNUP_METHODS = ("email", "google", "github")

FILE_TYPES = ("pdf", "png", "csv", "docx", "jpg")
FILE_TYPE_WEIGHTS = (35, 20, 25, 10, 10)
FILE_NAMES: tuple[str | None, ...] = (
    "invoice.pdf",
    "résumé (final).pdf",
    "Q3 report | draft.docx",
    "📎 notes.csv",
    "export_2026-11.csv",
    "scan_" + "0123456789" * 22 + ".png",
    None,
)
FILE_NAME_WEIGHTS = (30, 8, 8, 4, 35, 1, 14)

ACCOUNT_FIELDS = ("email", "plan", "billing_address", "company/name")

# --- mobile (ios_app) ------------------------------------------------------------------------------

SCREENS: tuple[tuple[str, str | None, str | None], ...] = (
    ("Home", "Welcome | Initech", "discovery"),
    ("Library", "Your Library", "library"),
    ("Player", "Now Playing ▶︎", "playback"),
    ("Search", "Search", "discovery"),
    ("Settings", "Settings / Account", "account"),
    ("Paywall", "Go Premium ✨", None),
    ("Café Playlist", "Café del Mar — Chill", "discovery"),
)
SCREEN_WEIGHTS = (25, 20, 30, 12, 5, 3, 5)
SONGS = ("Café del Mar", "Für Elise", "Don’t Stop Me Now", "🎵 Lo-fi Beats to Bill To", "Clair de Lune",
         "Bohemian Rhapsody (Remastered " + "2011 " * 45 + ")")
ARTISTS = ("Energy 52", "Beethoven", "Queen", "Lofi Girl", "Debussy", "Queen")
GENRES = ("electronic", "classical", "rock", "lo-fi", "classical", "rock")
SONG_WEIGHTS = (20, 15, 25, 25, 14, 1)
NETWORKS = ("wifi", "cellular")
IOS_MODELS = ("iPhone14,2", "iPhone15,3", "iPhone16,1", "iPad13,4")
IOS_OS_VERSIONS = ("17.6.1", "18.1", "18.2")
IOS_APP_VERSIONS = ("4.2.0", "4.2.1", "4.3.0")
IOS_APP_BUILDS = ("4200", "4210", "4300")
IOS_SCREEN_SIZES = ((2532, 1170), (2796, 1290), (2556, 1179), (2360, 1640))
CARRIERS: tuple[str | None, ...] = ("Verizon", "AT&T", "T-Mobile", "Orange F", None)

# --- people ----------------------------------------------------------------------------------------

FIRST_NAMES = ("John", "Jane", "Michael", "Dwight", "Pam", "José", "Zoë", "Łukasz", "Siobhán", "Renée",
               "Mei", "Ahmed", "Olga", "Bjørn", "Chloé", "Peter", "Samir", "Joanna", "Milton", "Aiko")
LAST_NAMES = ("Doe", "Smith", "Schrute", "Beesly", "Álvarez", "Müller", "Kowalski", "O'Brien", "Dubois",
              "Chen", "Haddad", "Ivanova", "Søndergaard", "Tanaka", "García", "Gibbons", "Nagheenanajar",
              "Bolton", "Waddams", "Lumbergh")
EMAIL_DOMAINS = ("initech.com", "example.com", "gmail.com", "fastmail.fm", "initrode.co.uk")
COMPANIES: tuple[str | None, ...] = ("Initech", "Initrode", "Chotchkie’s", "Globex | Corp", "Café Bistro",
                                     "Rocket 🚀 Labs", "Penetrode", None)
WEBSITES = ("example.com", "initech.com", "https://www.initrode.co.uk/about/", "globex.com")
INDUSTRIES = ("Software", "Finance", "Retail / E-commerce", "Hospitality")

# --- Engage ----------------------------------------------------------------------------------------

#: (audience key, audience name, share of users who enter it).
AUDIENCES = (
    ("order_completed_last_30days", "Order Completed Last 30 Days", 0.30),
    ("high_value_customer", "High Value Customer", 0.10),
    ("churn_risk", "Churn Risk", 0.15),
)
#: (trait key, trait name, column type, share of users who have it).
COMPUTED_TRAITS = (
    ("lifetime_value", "Lifetime Value", "double", 0.70),
    ("favorite_category", "Favorite Category", "text", 0.60),
)
FAVORITE_CATEGORIES = ("Books/Media", "Home & Garden", "Café ☕", "Électronique", "Office Supplies",
                       "Stationery, Paper | Printing, Binding, Filing, Labels, " + "and more " * 20)
FAVORITE_CATEGORY_WEIGHTS = (25, 20, 10, 10, 34, 1)
