"""Users & access (admin): accounts, roles, passwords, collections and who may read them."""

from __future__ import annotations

import streamlit as st

from app.accounts import ROLES
from app.services import session, users
from ui import common
from ui.safe_text import safe_label

SHOW_ONCE_KEY = "kb_show_password"  # (user, password) to show exactly once after a create or reset


def show_password_once() -> None:
    shown = st.session_state.pop(SHOW_ONCE_KEY, None)
    if shown:
        name, password = shown
        st.success(f"Password for **{safe_label(name)}** — give it to them now; it is not shown again:")
        st.code(password, language=None)


def users_tab(admin: session.SessionUser) -> None:
    c = common.container()
    show_password_once()
    rows = users.users(c, admin)
    st.dataframe([{"user": u.name, "role": u.role,
                   "state": "disabled" if u.disabled else "locked" if u.locked else "active",
                   "created": common.fmt_time(u.created_at)} for u in rows], hide_index=True, width="stretch")
    left, right = st.columns(2)
    with left, st.form("add_user", clear_on_submit=True):
        st.markdown("**Add a user**")
        name = st.text_input("User name")
        role = st.selectbox("Role", ROLES)
        password = st.text_input("Password", type="password", help="Leave empty to generate one (shown once).")
        if st.form_submit_button("Add user", icon=":material/person_add:"):
            with common.user_errors("Adding the user"):
                pw = users.create_user(c, admin, name, role, password or None).password
                if not password:
                    st.session_state[SHOW_ONCE_KEY] = (name.strip(), pw)
                common.flash(f"User {safe_label(name.strip())} added.")
                st.rerun()
    with right:
        st.markdown("**Change a user**")
        names = [u.name for u in rows]
        picked = st.selectbox("User", names, key="edit_user")
        target = next(u for u in rows if u.name == picked)
        new_role = st.selectbox("Role", ROLES, index=ROLES.index(target.role), key=f"role_{picked}")
        b1, b2, b3 = st.columns(3)
        if b1.button("Save role", disabled=new_role == target.role):
            with common.user_errors("Changing the role"):
                users.set_role(c, admin, picked, new_role)
                common.flash(f"{safe_label(picked)} is now {new_role}.")
                st.rerun()
        if b2.button("Enable" if target.disabled else "Disable"):
            with common.user_errors("Changing the account"):
                users.set_disabled(c, admin, picked, not target.disabled)
                common.flash(f"{safe_label(picked)} is now {'enabled' if target.disabled else 'disabled'}.")
                st.rerun()
        if b3.button("Reset password", help="Generates a new password and unlocks the account."):
            with common.user_errors("Resetting the password"):
                st.session_state[SHOW_ONCE_KEY] = (picked, users.reset_password(c, admin, picked).password)
                st.rerun()


def access_tab(admin: session.SessionUser) -> None:
    c = common.container()
    cols = users.collections(c, admin)
    st.dataframe([{"collection": x.name, "description": x.description, "readers": ", ".join(x.grants) or "admins only"}
                  for x in cols], hide_index=True, width="stretch")
    st.caption("Admins read every collection. (r) read, (rw) read and upload.")
    left, right = st.columns(2)
    with left, st.form("add_collection", clear_on_submit=True):
        st.markdown("**New collection**")
        name = st.text_input("Name")
        description = st.text_input("Description")
        if st.form_submit_button("Create", icon=":material/create_new_folder:"):
            with common.user_errors("Creating the collection"):
                users.create_collection(c, admin, name, description)
                common.flash(f"Collection {safe_label(name.strip())} created.")
                st.rerun()
    if not cols:
        return
    with right:
        st.markdown("**Grant or revoke access**")
        # Outside the form, so that changing it shows the one picker that applies at once.
        to = st.radio("To", ["a role", "a user"], horizontal=True, key="grant_to")
        with st.form("grant"):
            collection = st.selectbox("Collection", [x.name for x in cols])
            if to == "a role":
                target = {"role": st.selectbox("Role", ROLES, key="grant_role")}
            else:
                target = {"user": st.selectbox("User", [u.name for u in users.users(c, admin)], key="grant_user")}
            write = st.checkbox("May also upload into it")
            g, r = st.columns(2)
            grant = g.form_submit_button("Grant", icon=":material/lock_open:")
            revoke = r.form_submit_button("Revoke", icon=":material/lock:")
    if grant:
        with common.user_errors("Granting access"):
            users.grant(c, admin, collection, write=write, **target)
            common.flash(f"Granted {safe_label(collection)} to {safe_label(next(iter(target.values())))}.")
            st.rerun()
    if revoke:
        with common.user_errors("Revoking access"):
            n = users.revoke(c, admin, collection, **target)
            if not n:
                st.info("There was no such grant.")
            else:
                common.flash(f"Revoked {safe_label(collection)} from {safe_label(next(iter(target.values())))}.")
                st.rerun()


admin = common.require(session.USERS)
st.title("Users & access")
common.show_flash()
# A keyed tab bar remembers the open tab across reruns: after a grant the admin stays on Collections.
users_section, access = st.tabs(["Users", "Collections and grants"], key="users_tab", on_change="rerun")
with users_section:
    users_tab(admin)
with access:
    access_tab(admin)
