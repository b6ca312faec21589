"""Users & access (admin): accounts, roles, passwords, collections and who may read them."""

from __future__ import annotations

import streamlit as st

from app.accounts import ROLES
from app.services import session, users
from ui import common, i18n, pii_policy
from ui.i18n import t
from ui.safe_text import safe_label

i18n.register({
    "users.title": {"en": "Users & access", "zh": "用户与权限"},
    "users.tab_users": {"en": "Users", "zh": "用户"},
    "users.tab_access": {"en": "Collections and grants", "zh": "文档集与授权"},
    "users.shown_once": {"en": "Password for **{name}** — give it to them now; it is not shown again:",
                         "zh": "**{name}** 的密码——请现在交给对方，之后不会再显示："},
    "users.state.disabled": {"en": "disabled", "zh": "已停用"},
    "users.state.locked": {"en": "locked", "zh": "已锁定"},
    "users.state.active": {"en": "active", "zh": "正常"},
    "users.col.user": {"en": "user", "zh": "用户"},
    "users.col.role": {"en": "role", "zh": "角色"},
    "users.col.state": {"en": "state", "zh": "状态"},
    "users.col.created": {"en": "created", "zh": "创建时间"},
    "users.add": {"en": "Add a user", "zh": "添加用户"},
    "users.name": {"en": "User name", "zh": "用户名"},
    "users.role": {"en": "Role", "zh": "角色"},
    "users.password": {"en": "Password", "zh": "密码"},
    "users.password_help": {"en": "Leave empty to generate one (shown once).", "zh": "留空则自动生成（只显示一次）。"},
    "users.add_button": {"en": "Add user", "zh": "添加用户"},
    "users.add_action": {"en": "Adding the user", "zh": "添加用户"},
    "users.added": {"en": "User {name} added.", "zh": "已添加用户 {name}。"},
    "users.change": {"en": "Change a user", "zh": "修改用户"},
    "users.user": {"en": "User", "zh": "用户"},
    "users.save_role": {"en": "Save role", "zh": "保存角色"},
    "users.role_action": {"en": "Changing the role", "zh": "修改角色"},
    "users.role_now": {"en": "{name} is now {role}.", "zh": "{name} 现在是{role}。"},
    "users.enable": {"en": "Enable", "zh": "启用"},
    "users.disable": {"en": "Disable", "zh": "停用"},
    "users.account_action": {"en": "Changing the account", "zh": "修改账户"},
    "users.now_enabled": {"en": "{name} is now enabled.", "zh": "{name} 已启用。"},
    "users.now_disabled": {"en": "{name} is now disabled.", "zh": "{name} 已停用。"},
    "users.reset": {"en": "Reset password", "zh": "重置密码"},
    "users.reset_help": {"en": "Generates a new password and unlocks the account.",
                         "zh": "生成新密码并解锁账户。"},
    "users.reset_action": {"en": "Resetting the password", "zh": "重置密码"},
    "users.col.collection": {"en": "collection", "zh": "文档集"},
    "users.col.description": {"en": "description", "zh": "说明"},
    "users.col.readers": {"en": "readers", "zh": "读者"},
    "users.admins_only": {"en": "admins only", "zh": "仅管理员"},
    "users.access_note": {"en": "Admins read every collection. (r) read, (rw) read and upload.",
                          "zh": "管理员可读取所有文档集。(r) 只读，(rw) 可读可上传。"},
    "users.new_collection": {"en": "New collection", "zh": "新建文档集"},
    "users.collection_name": {"en": "Name", "zh": "名称"},
    "users.collection_description": {"en": "Description", "zh": "说明"},
    "users.create": {"en": "Create", "zh": "创建"},
    "users.create_action": {"en": "Creating the collection", "zh": "创建文档集"},
    "users.created": {"en": "Collection {name} created.", "zh": "已创建文档集 {name}。"},
    "users.grant_title": {"en": "Grant or revoke access", "zh": "授予或撤销权限"},
    "users.to": {"en": "To", "zh": "授予对象"},
    "users.to_role": {"en": "a role", "zh": "角色"},
    "users.to_user": {"en": "a user", "zh": "用户"},
    "users.collection": {"en": "Collection", "zh": "文档集"},
    "users.may_upload": {"en": "May also upload into it", "zh": "同时允许上传"},
    "users.grant": {"en": "Grant", "zh": "授权"},
    "users.revoke": {"en": "Revoke", "zh": "撤销"},
    "users.grant_action": {"en": "Granting access", "zh": "授权"},
    "users.revoke_action": {"en": "Revoking access", "zh": "撤销权限"},
    "users.granted": {"en": "Granted {collection} to {target}.", "zh": "已将 {collection} 授权给 {target}。"},
    "users.no_grant": {"en": "There was no such grant.", "zh": "没有这样的授权。"},
    "users.revoked": {"en": "Revoked {collection} from {target}.", "zh": "已撤销 {target} 对 {collection} 的权限。"},
    "users.col.pii": {"en": "personal data scrubbed", "zh": "脱敏范围"},
    "users.pii": {"en": "Personal data to scrub", "zh": "脱敏范围"},
    "users.pii_title": {"en": "Change what is scrubbed", "zh": "修改脱敏范围"},
    "users.pii_note": {"en": "The collection's documents are indexed again from their originals.",
                       "zh": "该文档集的文档将根据原件重新索引。"},
    "users.pii_save": {"en": "Save and re-index", "zh": "保存并重新索引"},
    "users.pii_action": {"en": "Changing what is scrubbed", "zh": "修改脱敏范围"},
    "users.pii_done": {"en": "{name} now scrubs: {policy}. {n} document(s) queued to be indexed again.",
                       "zh": "{name} 的脱敏范围已改为：{policy}。{n} 个文档已排队重新索引。"},
})



def role_label(role: str) -> str:
    return t("role." + role) if "role." + role in i18n.STRINGS else role

SHOW_ONCE_KEY = "kb_show_password"  # (user, password) to show exactly once after a create or reset


def show_password_once() -> None:
    shown = st.session_state.pop(SHOW_ONCE_KEY, None)
    if shown:
        name, password = shown
        st.success(t("users.shown_once", name=safe_label(name)))
        st.code(password, language=None)


def users_tab(admin: session.SessionUser) -> None:
    c = common.container()
    show_password_once()
    rows = users.users(c, admin)
    st.dataframe([{"user": u.name, "role": role_label(u.role),
                   "state": t("users.state." + ("disabled" if u.disabled else "locked" if u.locked else "active")),
                   "created": common.fmt_time(u.created_at)} for u in rows], hide_index=True, width="stretch",
                 column_config={k: t(f"users.col.{k}") for k in ("user", "role", "state", "created")})
    left, right = st.columns(2)
    with left, st.form("add_user", clear_on_submit=True):
        st.markdown(f"**{t('users.add')}**")
        name = st.text_input(t("users.name"))
        role = st.selectbox(t("users.role"), ROLES, format_func=role_label)
        password = st.text_input(t("users.password"), type="password", help=t("users.password_help"))
        if st.form_submit_button(t("users.add_button"), icon=":material/person_add:"):
            with common.user_errors(t("users.add_action")):
                pw = users.create_user(c, admin, name, role, password or None).password
                if not password:
                    st.session_state[SHOW_ONCE_KEY] = (name.strip(), pw)
                common.flash(t("users.added", name=safe_label(name.strip())))
                st.rerun()
    with right:
        st.markdown(f"**{t('users.change')}**")
        names = [u.name for u in rows]
        picked = st.selectbox(t("users.user"), names, key="edit_user")
        target = next(u for u in rows if u.name == picked)
        new_role = st.selectbox(t("users.role"), ROLES, index=ROLES.index(target.role), key=f"role_{picked}",
                                format_func=role_label)
        b1, b2, b3 = st.columns(3)
        if b1.button(t("users.save_role"), disabled=new_role == target.role):
            with common.user_errors(t("users.role_action")):
                users.set_role(c, admin, picked, new_role)
                common.flash(t("users.role_now", name=safe_label(picked), role=role_label(new_role)))
                st.rerun()
        if b2.button(t("users.enable") if target.disabled else t("users.disable")):
            with common.user_errors(t("users.account_action")):
                users.set_disabled(c, admin, picked, not target.disabled)
                done = "users.now_enabled" if target.disabled else "users.now_disabled"
                common.flash(t(done, name=safe_label(picked)))
                st.rerun()
        if b3.button(t("users.reset"), help=t("users.reset_help")):
            with common.user_errors(t("users.reset_action")):
                st.session_state[SHOW_ONCE_KEY] = (picked, users.reset_password(c, admin, picked).password)
                st.rerun()


def access_tab(admin: session.SessionUser) -> None:
    c = common.container()
    cols = users.collections(c, admin)
    st.dataframe([{"collection": x.name, "description": x.description, "pii": pii_policy.label(x.pii),
                   "readers": ", ".join(x.grants) or t("users.admins_only")} for x in cols], hide_index=True,
                 width="stretch",
                 column_config={k: t(f"users.col.{k}") for k in ("collection", "description", "pii", "readers")})
    st.caption(t("users.access_note"))
    left, right = st.columns(2)
    with left, st.form("add_collection", clear_on_submit=True):
        st.markdown(f"**{t('users.new_collection')}**")
        name = st.text_input(t("users.collection_name"))
        description = st.text_input(t("users.collection_description"))
        pii = st.selectbox(t("users.pii"), list(users.PII_POLICIES), format_func=pii_policy.label,
                           help=t("pii.help"))
        if st.form_submit_button(t("users.create"), icon=":material/create_new_folder:"):
            with common.user_errors(t("users.create_action")):
                users.create_collection(c, admin, name, description, pii)
                common.flash(t("users.created", name=safe_label(name.strip())))
                st.rerun()
    if not cols:
        return
    with left, st.form("collection_pii"):
        st.markdown(f"**{t('users.pii_title')}**")
        picked = st.selectbox(t("users.collection"), [x.name for x in cols], key="pii_collection")
        policy = st.selectbox(t("users.pii"), list(users.PII_POLICIES), format_func=pii_policy.label,
                              key="pii_policy", help=t("pii.help"))
        st.caption(t("users.pii_note"))
        if st.form_submit_button(t("users.pii_save"), icon=":material/shield:"):
            with common.user_errors(t("users.pii_action")):
                n = users.set_pii_policy(c, admin, picked, policy)
                common.flash(t("users.pii_done", name=safe_label(picked), policy=pii_policy.label(policy), n=n))
                st.rerun()
    with right:
        st.markdown(f"**{t('users.grant_title')}**")
        # Outside the form, so that changing it shows the one picker that applies at once.
        # option values stay fixed (tests and widget state use them); only what is shown is translated
        to = st.radio(t("users.to"), ["a role", "a user"], horizontal=True, key="grant_to",
                      format_func=lambda k: t("users.to_" + k.split()[-1]))
        with st.form("grant"):
            collection = st.selectbox(t("users.collection"), [x.name for x in cols])
            if to == "a role":
                target = {"role": st.selectbox(t("users.role"), ROLES, key="grant_role", format_func=role_label)}
            else:
                target = {"user": st.selectbox(t("users.user"), [u.name for u in users.users(c, admin)],
                                               key="grant_user")}
            write = st.checkbox(t("users.may_upload"))
            g, r = st.columns(2)
            grant = g.form_submit_button(t("users.grant"), icon=":material/lock_open:")
            revoke = r.form_submit_button(t("users.revoke"), icon=":material/lock:")
    who = safe_label(role_label(target["role"]) if "role" in target else target["user"])
    if grant:
        with common.user_errors(t("users.grant_action")):
            users.grant(c, admin, collection, write=write, **target)
            common.flash(t("users.granted", collection=safe_label(collection), target=who))
            st.rerun()
    if revoke:
        with common.user_errors(t("users.revoke_action")):
            n = users.revoke(c, admin, collection, **target)
            if not n:
                st.info(t("users.no_grant"))
            else:
                common.flash(t("users.revoked", collection=safe_label(collection), target=who))
                st.rerun()


admin = common.require(session.USERS)
st.title(t("users.title"))
common.show_flash()
# A keyed tab bar remembers the open tab across reruns: after a grant the admin stays on Collections.
users_section, access = st.tabs([t("users.tab_users"), t("users.tab_access")], key="users_tab", on_change="rerun")
with users_section:
    users_tab(admin)
with access:
    access_tab(admin)
