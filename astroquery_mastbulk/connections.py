"""astroquery's MAST API connections, with their URLs read from ``astroquery.mast.conf.server`` at call time.

astroquery 0.4.11 computes these URLs once, when ``astroquery.mast`` is imported, so a later
``conf.server`` change (a mirror, a test server, ``conf.set_temp``) is ignored by its queries. Our
subclasses' queries follow the setting, as DESIGN.md promises for every URL the package builds.
"""

from astroquery.mast import conf as mast_conf
from astroquery.mast.discovery_portal import PortalAPI
from astroquery.mast.services import ServiceAPI

__all__ = ["PortalConnection", "ServiceConnection"]


class PortalConnection(PortalAPI):
    """The Mashup (Discovery Portal) API connection used by ``Observations`` queries."""

    _configs_by_server = {}

    @property
    def _column_configs(self):
        # astroquery caches each service's column configuration class-wide; they can differ
        # between servers, so the cache is kept per server (and shared by our connections).
        return self._configs_by_server.setdefault(mast_conf.server, {})

    MAST_REQUEST_URL = property(lambda self: mast_conf.server + "/api/v0/invoke")
    COLUMNS_CONFIG_URL = property(lambda self: mast_conf.server + "/portal/Mashup/Mashup.asmx/columnsconfig")
    MAST_DOWNLOAD_URL = property(lambda self: mast_conf.server + "/api/v0.1/Download/file")
    MAST_BUNDLE_URL = property(lambda self: mast_conf.server + "/api/v0.1/Download/bundle")
    TIMEOUT = property(lambda self: mast_conf.timeout)
    PAGESIZE = property(lambda self: mast_conf.pagesize)


class ServiceConnection(ServiceAPI):
    """The microservice API connection used by ``MastMissions`` queries."""

    SERVICE_URL = property(lambda self: mast_conf.server)
    MISSIONS_DOWNLOAD_URL = property(lambda self: mast_conf.server + "/search/")
    MAST_DOWNLOAD_URL = property(lambda self: mast_conf.server + "/api/v0.1/Download/file")

    def set_service_params(self, service_dict, service_name="", server_prefix=False):
        """Remember the service; its request URL is built from the server setting when used."""
        self._service_name, self._server_prefix = service_name, server_prefix
        self.SERVICES = service_dict

    @property
    def REQUEST_URL(self):
        name = getattr(self, "_service_name", "")
        if getattr(self, "_server_prefix", False):
            return mast_conf.server.replace("mast", f"{name}.mast") + "/api/v0.1/"
        return f"{mast_conf.server}/{name}/api/v0.1/" if name else f"{mast_conf.server}/api/v0.1/"
